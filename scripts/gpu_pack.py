"""Pack scripts/gpu_sweep.sh's runs into at most eight tar files of under 16 MiB for $OUT.

For a remote GPU machine that returns at most 64 MiB per call. A finished stage travels as
weights only: ``averaged.pt`` when it averaged, else ``last.pt`` without optimiser,
scheduler and random state. An unfinished stage travels whole (``last.pt`` as written), so
that ``seg_tool train --resume`` continues it on the development machine. Every
``log.jsonl`` and console log travels too. Unpack with ``tar -xf FILE -C runs``.

Usage: python3 scripts/gpu_pack.py RUNS_DIR OUT_DIR
"""

import io
import sys
import tarfile
from pathlib import Path

import torch

TAR_LIMIT = 15 * 2**20
MAX_FILES = 8
TRAINING_STATE = ('optimizer', 'scheduler', 'numpy_rng', 'torch_rng', 'averaged',
                  'averaged_count')


def _serialised(checkpoint: dict) -> bytes:
    """Return ``checkpoint`` as the bytes ``torch.save`` writes."""
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return buffer.getvalue()


def stage_members(stage: Path) -> list[tuple[str, bytes]]:
    """Return the (name in the archive, content) pairs that carry one stage's results."""
    members = [(f'{stage.name}/log.jsonl', (stage / 'log.jsonl').read_bytes())]
    last = torch.load(stage / 'last.pt', map_location='cpu', weights_only=False)
    finished = last['epoch'] >= last['train_config']['epochs']
    if not finished:
        members.append((f'{stage.name}/last.pt', (stage / 'last.pt').read_bytes()))
    elif (stage / 'averaged.pt').exists():
        members.append((f'{stage.name}/averaged.pt', (stage / 'averaged.pt').read_bytes()))
    else:
        weights = {key: value for key, value in last.items() if key not in TRAINING_STATE}
        members.append((f'{stage.name}/last.pt', _serialised(weights)))
    print(f'{stage.name}: epoch {last["epoch"]} of {last["train_config"]["epochs"]}'
          f'{"" if finished else " (unfinished: travels whole)"}')
    return members


def pack(runs: Path, out: Path) -> list[Path]:
    """Write the members of every stage under ``runs`` into tar files in ``out``."""
    groups: list[list[tuple[str, bytes]]] = [[]]
    logs = [(path.name, path.read_bytes()) for path in sorted(runs.glob('*.log'))]
    for stage in sorted(path for path in runs.iterdir() if (path / 'last.pt').exists()):
        members = stage_members(stage)
        size = sum(len(content) for _, content in members)
        if groups[-1] and sum(len(c) for _, c in groups[-1]) + size > TAR_LIMIT:
            groups.append([])
        groups[-1].extend(members)
    groups[-1].extend(logs)
    if len(groups) > MAX_FILES:
        raise SystemExit(f'{len(groups)} tar files needed, at most {MAX_FILES} come back: '
                         'start fewer runs (MAX_RUNS)')
    written = []
    for index, members in enumerate(groups):
        path = out / f'runs{index}.tar'
        with tarfile.open(path, 'w') as tar:
            for name, content in members:
                info = tarfile.TarInfo(name)
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
        written.append(path)
        print(f'{path.name}: {path.stat().st_size / 2**20:.1f} MiB')
    return written


if __name__ == '__main__':
    pack(Path(sys.argv[1]), Path(sys.argv[2]))
