"""Print the architecture table of docs/experiments from finished runs (compare_architectures.sh).

For each run folder: val IoU of its last epoch (``val_uncalibrated.json`` from ``seg_tool
evaluate --model RUN/last.pt`` when present, as for runs trained with ``--eval-every 0``,
else the last val record of log.jsonl), parameters and GFLOPs at
360x480, and ONNX Runtime CPU latency at 360x480 (2 threads, median of 30 sample frames,
all models timed interleaved in one loop). Usage:
    .venv/bin/python scripts/architecture_table.py runs/compare_naive runs/compare_decoder ...
"""

import json
import sys
import tempfile
from pathlib import Path

from seg_node.tools.bench import bench_backends
from seg_node.core.inference.onnxruntime import OnnxRuntimeBackend
from seg_node.models.torch_backend import load_checkpoint
from seg_node.models.complexity import count_parameters, gflops_at
from seg_node.training.export import export_onnx

THIN = ('pole', 'sign_symbol', 'pedestrian', 'bicyclist')


def last_val_record(run_dir: Path) -> dict:
    """Return {'epoch', 'val_miou', 'val_iou'} of the run's last checkpoint."""
    evaluated = run_dir / 'val_uncalibrated.json'
    log = [json.loads(line) for line in (run_dir / 'log.jsonl').read_text().splitlines()]
    if evaluated.exists():
        scores = json.loads(evaluated.read_text())
        return {'epoch': log[-1]['epoch'], 'val_miou': scores['miou'],
                'val_iou': scores['per_class_iou']}
    return [record for record in log if 'val_iou' in record][-1]


def main(run_dirs: list[str]) -> None:
    """Print one Markdown row per run."""
    rows, backends = {}, {}
    with tempfile.TemporaryDirectory() as folder:
        for run_dir in map(Path, run_dirs):
            record = last_val_record(run_dir)
            model, config = load_checkpoint(run_dir / 'last.pt')
            path = export_onnx(model, Path(folder) / f'{run_dir.name}.onnx',
                               config['class_names'], (360, 480), config['arch'])
            backends[run_dir.name] = OnnxRuntimeBackend(
                path, num_threads=2, allow_spinning=False)
            rows[run_dir.name] = (config['arch'], record, count_parameters(model.network),
                                  gflops_at(model.network, 360, 480))
        latency = bench_backends(backends, frames=30)['latency_ms']
    print('| run | arch | epochs | val mIoU | ' + ' | '.join(THIN)
          + ' | params | GFLOPs 360x480 | ORT ms (2 thr, p50) |')
    print('|---' * (7 + len(THIN)) + '|')
    for name, (arch, record, parameters, gflops) in rows.items():
        thin = ' | '.join(f'{record["val_iou"][c]:.3f}' for c in THIN)
        print(f'| {name} | {arch} | {record["epoch"]} | {record["val_miou"]:.3f} | {thin} | '
              f'{parameters / 1e6:.2f}M | {gflops:.2f} | {latency[name]["p50"]:.1f} |')


if __name__ == '__main__':
    main(sys.argv[1:])
