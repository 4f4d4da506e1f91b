"""``seg_tool``: offline commands (train, evaluate, export, bench, demo, bags, ...).

Each subcommand is a thin wrapper over a module; heavy imports (torch) happen inside the
subcommand that needs them, so the node's runtime never loads them.
"""

import argparse
import json
import sys
from dataclasses import fields
from functools import partial
from pathlib import Path

from seg_node.tools.cli import bags as cli_bags
from seg_node.tools.cli import fleet as cli_fleet
from seg_node.tools.cli import tensorrt as cli_tensorrt
from seg_node.tools.cli.common import DEFAULT_DATA, write_json
from seg_node.core.classes import DEFAULT_CLASSES_PATH, load_classes
from seg_node.core.errors import SegNodeError
from seg_node.core.inference.engine_cache import PRECISIONS
from seg_node.models import ARCHITECTURE_NAMES, DEFAULT_MODEL_PATH
from seg_node.training.recipe import make_train_config, SCHEDULES, TrainConfig

# train's arguments that are not TrainConfig settings
_NOT_SETTINGS = frozenset({'command', 'func', 'recipe', 'resume', 'data', 'output'})
_TRAIN_DEFAULTS = {field.name: field.default for field in fields(TrainConfig)}


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Return ``train``'s settings: TrainConfig defaults < ``--recipe`` files < given flags."""
    given = {name: value for name, value in vars(args).items() if name not in _NOT_SETTINGS}
    if 'scale' in given:
        given['scale_min'], given['scale_max'] = given.pop('scale')
    for name in ('classes', 'init_from'):
        if name in given:
            given[name] = str(given[name])
    return make_train_config(args.data, args.output, args.recipe, **given)


def cmd_train(args: argparse.Namespace) -> int:
    """Train a network (see seg_node.training.train)."""
    from seg_node.training.train import train
    record = train(train_config_from_args(args), resume=args.resume)
    print(json.dumps({k: v for k, v in record.items() if k != 'val_iou'}))
    return 0


def cmd_pool_averages(args: argparse.Namespace) -> int:
    """Pool the weight averages of runs that continued one network (into one averaged.pt)."""
    from seg_node.training.train import pool_averages
    report = pool_averages(args.checkpoints, args.output,
                           str(args.data) if args.data else None, args.threads)
    print(f'pooled {report["averaged_count"]} snapshots of {len(args.checkpoints)} runs; '
          f'wrote {report["output"]}')
    return 0


def _backend_for(model: Path, backend: str, threads: int):
    from seg_node.core.inference.base import create_backend
    if model.suffix == '.pt':
        backend = 'torch'
    return create_backend(backend, model, threads)


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Score a model (ONNX or checkpoint) on labelled frames, through the node's Segmenter."""
    from seg_node.evaluation.dataset import load_split
    from seg_node.evaluation.scoring import evaluate_frames, latency_percentiles
    from seg_node.evaluation.metrics import format_table, scores_to_dict
    from seg_node.core.pipeline import check_inference_size, Segmenter
    size = tuple(args.inference_size) if args.inference_size else None
    check_inference_size(size)
    classes = load_classes(args.classes)
    backend = _backend_for(args.model, args.backend, args.threads)
    segmenter = Segmenter(backend, size)
    data = load_split(args.data, args.split, args.limit, args.image_scale)
    matrix, latencies = evaluate_frames(segmenter.segment,
                                        zip(data.images, data.labels, strict=True),
                                        classes.num_classes)
    scores = matrix.scores()
    print(format_table(scores, classes.names))
    if args.json:
        write_json(args.json, {'model': str(args.model), 'backend': backend.name,
                               'inference_size': list(size) if size else 'frame size',
                               'frames': len(data.images), **scores_to_dict(
                                   scores, classes.names),
                               'latency_ms': latency_percentiles(latencies)})
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Score models on the same frames; bootstrap each one's difference to the first."""
    from seg_node.evaluation.dataset import load_split
    from seg_node.evaluation.scoring import compare_models, comparison_to_dict, format_comparison
    from seg_node.evaluation.metrics import scores_to_dict
    if len(args.model) < 2:
        print('seg_tool: error: compare needs at least two --model (the first is the '
              'baseline)', file=sys.stderr)
        return 2
    if not 0.0 < args.interval < 1.0 or args.samples < 1:
        print(f'seg_tool: error: --interval {args.interval} needs to be in (0, 1) and --samples '
              f'{args.samples} at least 1', file=sys.stderr)
        return 2
    classes = load_classes(args.classes)
    backends = [_backend_for(model, args.backend, args.threads) for model in args.model]
    data = load_split(args.data, args.split, args.limit)
    if not 1 <= args.block <= len(data.images):
        print(f'seg_tool: error: --block {args.block} needs to be in 1..{len(data.images)} '
              f'(the frames of {args.split})', file=sys.stderr)
        return 2
    comparison = compare_models([backend.infer for backend in backends], data.images,
                                data.labels, classes.num_classes, args.block, args.samples,
                                args.seed)
    names = [str(model) for model in args.model]
    report = comparison_to_dict(comparison, names, classes.names, args.interval)
    print(format_comparison(report, names[0], args.interval))
    if args.json:
        write_json(args.json, {
            'split': args.split, 'frames': len(data.images), 'block': args.block,
            'samples': args.samples, 'interval': args.interval, 'models': names,
            'scores': [scores_to_dict(scores, classes.names) for scores in comparison.scores],
            'against_first': report})
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export a checkpoint (or re-export an ONNX model) to a verified ONNX file."""
    from seg_node.core.inference.onnxruntime import OnnxRuntimeBackend
    from seg_node.evaluation.dataset import load_split
    from seg_node.models.torch_backend import load_checkpoint, TorchBackend
    from seg_node.training.export import export_onnx, reexport_onnx, verify_export
    classes = load_classes(args.classes)
    if args.source.suffix == '.onnx':
        source = OnnxRuntimeBackend(args.source)
        if source.info.class_names != classes.names:
            print(f'seg_tool: error: {args.source} classes {source.info.class_names} differ '
                  f'from {args.classes}', file=sys.stderr)
            return 1
        path = reexport_onnx(args.source, args.output, args.fp16)
    else:
        model, config = load_checkpoint(args.source)
        if tuple(config['class_names']) != classes.names:
            print(f'seg_tool: error: checkpoint classes {config["class_names"]} differ from '
                  f'{args.classes}', file=sys.stderr)
            return 1
        path = export_onnx(model, args.output, classes.names, tuple(args.inference_size),
                           config['arch'], args.fp16)
        source = TorchBackend(None, model=model)
    frames = load_split(args.data, 'val', args.parity_frames).images
    report = verify_export(path, source, frames)
    print(f'exported {path} ({path.stat().st_size / 1e6:.2f} MB{", fp16" if args.fp16 else ""})'
          f'; label agreement with {args.source.name} on {report.frames} val frames: '
          f'{report.label_agreement:.6f} ({report.identical_frames} identical); operators: '
          f'{" ".join(report.operators)}')
    problem = report.problem()
    if problem:
        print(f'seg_tool: error: {problem}', file=sys.stderr)
        return 1
    minimum = 0.99 if args.fp16 else 0.999
    if report.label_agreement < minimum:
        print(f'seg_tool: error: {path} and its source agree on fewer than {minimum:.1%} of '
              'label pixels', file=sys.stderr)
        return 1
    return 0


def cmd_complexity(args: argparse.Namespace) -> int:
    """Print parameters and GFLOPs of architectures at an input size."""
    from seg_node.models.architectures import ARCHITECTURES, build_model
    from seg_node.models.complexity import count_parameters, gflops_at
    report = {}
    for arch in args.arch or ARCHITECTURES:
        network = build_model(arch, load_classes(args.classes).num_classes)
        report[arch] = {'parameters': count_parameters(network),
                        'gflops': round(gflops_at(network, *args.size), 3),
                        'input': list(args.size)}
    write_json(args.json, report)
    return 0


def cmd_calibrate_bias(args: argparse.Namespace) -> int:
    """Fit per-class logit offsets for mIoU on training frames; write a new checkpoint."""
    from seg_node.evaluation.dataset import load_split
    from seg_node.models.torch_backend import TorchBackend
    from seg_node.training.calibrate import fit_offsets, sample_pixels, write_offset_checkpoint
    classes = load_classes(args.classes)
    data = load_split(args.data, args.split, args.limit)
    sample = sample_pixels(TorchBackend(args.checkpoint, args.threads),
                           zip(data.images, data.labels, strict=True), classes.num_classes,
                           args.step)
    offsets, before, after = fit_offsets(sample)
    write_offset_checkpoint(args.checkpoint, args.output, offsets)
    report = {'checkpoint': str(args.checkpoint), 'output': str(args.output),
              'split': args.split, 'frames': len(data.images), 'pixels': len(sample.labels),
              'miou_before': round(before, 4), 'miou_after': round(after, 4),
              'offsets': dict(zip(classes.names, map(float, offsets), strict=True))}
    print(f'{args.split} sample mIoU {before:.4f} -> {after:.4f}; wrote {args.output}')
    write_json(args.json, report)
    return 0


def cmd_resolution_ceiling(args: argparse.Namespace) -> int:
    """Print per-class IoU of label maps decided per s x s cell and nearest-upsampled."""
    from seg_node.evaluation.dataset import load_split
    from seg_node.evaluation.metrics import scores_to_dict
    from seg_node.evaluation.resolution import model_at_strides, resolution_ceiling
    classes = load_classes(args.classes)
    data = load_split(args.data, args.split, args.limit, args.image_scale)
    # report key -> (title, confusion matrix per stride)
    tables = {'strides': ('ground truth (ceiling)', {
        stride: resolution_ceiling(data.labels, stride, classes.num_classes)
        for stride in args.strides})}
    if args.model:
        frames = zip(data.images, data.labels, strict=True)
        tables['model_strides'] = (f'model {args.model}', model_at_strides(
            _backend_for(args.model, 'onnxruntime', args.threads), frames, args.strides,
            classes.num_classes))
    report: dict[str, object] = {'split': args.split, 'frames': len(data.labels)}
    for key, (title, matrices) in tables.items():
        print(title)
        print(f'{"stride":>6}  {"mIoU":>6}  ' + '  '.join(f'{n[:8]:>8}' for n in classes.names))
        report[key] = {}
        for stride, matrix in matrices.items():
            scores = matrix.scores()
            report[key][str(stride)] = scores_to_dict(scores, classes.names)
            print(f'{stride:>6}  {scores.miou:6.3f}  '
                  + '  '.join(f'{value:8.3f}' for value in scores.iou))
    if args.model:
        report['model'] = str(args.model)
    if args.json:
        write_json(args.json, report)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Stream the bundled CamVid sample through a real seg_node process."""
    from seg_node.tools.demo import run_demo
    summary = run_demo(args.output, args.model, args.repeats)
    return 0 if summary['frames'] and summary['exit_status'] == 0 else 1


def cmd_bench(args: argparse.Namespace) -> int:
    """Run a latency benchmark and print/write JSON."""
    from seg_node.tools import bench
    if not args.backend:
        result = bench.bench_e2e(args.model, args.frames, args.threads)
    else:
        from seg_node.core.inference.base import create_backend
        # several sessions are timed interleaved: idle ORT workers must not spin
        options = {'onnxruntime': {'allow_spinning': False}}
        backends = {}
        for spec in args.backend:
            name, _, model = spec.partition('=')
            path = Path(model) if model else args.model
            kind, _, variant = name.partition('-')
            # tensorrt-fp32 / -fp16 / -int8: that precision's engine
            precision = {'tensorrt': {'precision': variant}} if variant in PRECISIONS else {}
            backends[name] = create_backend(kind, path, args.threads, options | precision)
        result = bench.bench_backends(backends, args.frames)
    write_json(args.json, result)
    return 0


def cmd_bench_transport(args: argparse.Namespace) -> int:
    """Measure frame delivery per size, camera QoS and DDS transport."""
    from seg_node.tools.bench_transport import bench_transport, format_transport_table
    result = bench_transport(args.model, args.frames, args.rate)
    print(format_transport_table(result))
    if args.json:
        write_json(args.json, result)
    return 0


def cmd_soak(args: argparse.Namespace) -> int:
    """Feed seg_node frames at a rate for minutes; report counts, memory and latency (JSON)."""
    from seg_node.tools.soak import soak
    result = soak(args.model, args.minutes, args.rate, tuple(args.size), args.threads,
                  args.data, args.limit, args.period)
    write_json(args.json, result)
    return 0 if result['node_exit_status'] == 0 else 1


def cmd_bench_node(args: argparse.Namespace) -> int:
    """Measure the node's own cost per frame (near-free model) per cameras x size x rate."""
    from seg_node.tools.bench_node import bench_node, DEFAULT_ROWS, format_node_table, Row
    rows = [Row.parse(text) for text in args.row] if args.row else list(DEFAULT_ROWS)
    parameters = dict(item.split(':=', 1) for item in args.param)
    result = bench_node(rows, args.seconds, args.model, parameters, args.work_dir,
                        floor=not args.no_floor)
    print(format_node_table(result))
    if args.json:
        write_json(args.json, result)
    return 0


def _add_labelled_data_arguments(parser: argparse.ArgumentParser, split: str,
                                 split_help: str | None = None) -> None:
    """Add --data, --split, --limit and --classes: the labelled frames a command reads."""
    parser.add_argument('--data', type=Path, default=DEFAULT_DATA,
                        help='CamVid-format folder or split file')
    parser.add_argument('--split', default=split, help=split_help)
    parser.add_argument('--limit', type=int)
    parser.add_argument('--classes', type=Path, default=DEFAULT_CLASSES_PATH)


def _add_train_setting(parser: argparse.ArgumentParser, flag: str, help: str = '',
                       **kwargs) -> None:
    """Add a ``train`` flag that is set only when given, its help naming TrainConfig's default."""
    name = flag[2:].replace('-', '_')
    if name == 'scale':
        default = f'{_TRAIN_DEFAULTS["scale_min"]} {_TRAIN_DEFAULTS["scale_max"]}'
    elif name == 'classes':
        default = f'the bundled {DEFAULT_CLASSES_PATH.name}'
    elif isinstance(_TRAIN_DEFAULTS[name], tuple):
        default = ' '.join(_TRAIN_DEFAULTS[name]) or 'none'
    else:
        default = _TRAIN_DEFAULTS[name]
    parser.add_argument(flag, default=argparse.SUPPRESS,
                        help=f'{help} (default: {default})'.lstrip(), **kwargs)


def build_parser() -> argparse.ArgumentParser:
    """Return the seg_tool argument parser."""
    parser = argparse.ArgumentParser(prog='seg_tool', description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest='command', required=True)

    train = commands.add_parser(
        'train', help='train a network on CamVid-format data',
        description='Settings come from TrainConfig defaults, then each --recipe in turn, '
                    'then flags.')
    train.add_argument('--data', type=Path, default=DEFAULT_DATA)
    train.add_argument('--output', type=Path, required=True, help='run folder')
    train.add_argument('--recipe', type=Path, action='append', default=[],
                       help='YAML file of training settings, e.g. config/train_camvid.yaml; '
                       'repeat it to layer recipes (a later file overrides an earlier one)')
    setting = partial(_add_train_setting, train)
    setting('--arch', choices=ARCHITECTURE_NAMES)
    setting('--classes', type=Path)
    setting('--epochs', type=int)
    setting('--batch-size', type=int)
    setting('--crop', type=int)
    setting('--scale', type=float, nargs=2, metavar=('MIN', 'MAX'),
            help='random rescale range applied before cropping')
    setting('--lr', type=float)
    setting('--weight-decay', type=float, help='AdamW (decoupled) weight decay')
    setting('--seed', type=int)
    setting('--bf16', action=argparse.BooleanOptionalAction,
            help='bf16 autocast (fast only on CPUs with native bf16)')
    setting('--hard-fraction', type=float,
            help='online hard example mining: loss over the hardest fraction of pixels (e.g. '
                 '0.25); 1.0 = all pixels. Use it with --class-weighting none: with class '
                 'weights the frequent classes never reach the hardest fraction and are not '
                 'learnt')
    setting('--class-weighting',
            choices=('median-frequency', 'sqrt-median-frequency', 'none'))
    setting('--jaccard-weight', type=float,
            help='weight of a soft-Jaccard (mIoU surrogate) term added to the cross-entropy; '
                 '0 disables it')
    setting('--aux-weight', type=float,
            help='weight of an auxiliary head on the stride-16 features (deep supervision, '
                 'dropped at export); 0 disables it')
    setting('--paste-classes', nargs='+', metavar='NAME',
            help='class names whose objects are pasted from another training frame (same '
                 'rows unless magnified, shifted columns), e.g. pole sign_symbol')
    setting('--paste-probability', type=float,
            help='chance that a training frame gets pasted objects')
    setting('--paste-scale-max', type=float,
            help='magnify the donor frame by a random factor in [1, this] before pasting, '
                 'as if its objects stood closer (wider, taller poles); 1 = as photographed')
    setting('--teachers', type=Path, nargs='+', metavar='CHECKPOINT',
            help='trained networks to distil from: one larger network, or several whose mean '
                 'logits act as an ensemble')
    setting('--distill-weight', type=float,
            help='weight of the per-pixel KL(teachers || network) term')
    setting('--distill-temperature', type=float,
            help='softmax temperature of the distillation term')
    setting('--distill-class-weighted', action=argparse.BooleanOptionalAction,
            help="weight the distillation term per pixel by the true class's loss weight, "
                 'void left out, as the cross-entropy is; otherwise every pixel counts')
    setting('--init-from', type=Path,
            help="start from this checkpoint's weights (same --arch and classes) instead of "
                 "random ones, e.g. to average a trained network's weights")
    setting('--schedule', choices=SCHEDULES,
            help='learning rate per step: one-cycle (warm up to --lr, anneal to ~0) or '
                 'constant --lr')
    setting('--average-from', type=int, metavar='EPOCH',
            help='average the weights of this and every later epoch (stochastic weight '
                 'averaging; writes averaged.pt); 0 disables it')
    setting('--eval-every', type=int)
    setting('--device', help='auto (cuda when present) | cpu | cuda')
    setting('--threads', type=int)
    setting('--image-scale', type=float,
            help='resize the data set first (0.5: cheap same-budget ablations)')
    setting('--train-limit', type=int)
    setting('--val-limit', type=int)
    train.add_argument('--resume', action='store_true')
    train.set_defaults(func=cmd_train)

    pool = commands.add_parser(
        'pool-averages',
        help="pool runs' weight averages (averaged.pt of runs that continued the same "
             'network from other data orders) into one, batch norm re-estimated')
    pool.add_argument('checkpoints', type=Path, nargs='+', metavar='AVERAGED_PT')
    pool.add_argument('--output', type=Path, required=True,
                      help='folder for the pooled averaged.pt')
    pool.add_argument('--data', type=Path,
                      help="CamVid-format folder for the batch-norm crops (default: the first "
                           "run's)")
    pool.add_argument('--threads', type=int, default=0)
    pool.set_defaults(func=cmd_pool_averages)

    evaluate = commands.add_parser('evaluate', help='class IoU of a model on labelled frames')
    evaluate.add_argument('--model', type=Path, default=DEFAULT_MODEL_PATH,
                          help='ONNX model or training checkpoint (.pt)')
    _add_labelled_data_arguments(evaluate, split='val')
    evaluate.add_argument('--backend', default='onnxruntime')
    evaluate.add_argument('--threads', type=int, default=0)
    evaluate.add_argument('--image-scale', type=float, default=1.0)
    evaluate.add_argument('--inference-size', type=int, nargs=2, metavar=('HEIGHT', 'WIDTH'),
                          help="run the network at this size and resize its labels back, as "
                          "the node's inference_size parameter does; default: each frame's "
                          'own size')
    evaluate.add_argument('--json')
    evaluate.set_defaults(func=cmd_evaluate)

    compare = commands.add_parser(
        'compare', help='models on the same frames, with block-bootstrap intervals',
        description='Per-class IoU of every --model against the first on the same frames, '
                    'with the interval of the difference over block-bootstrap resamples of '
                    'the frames (runs of consecutive frames, which show the same objects).')
    compare.add_argument('--model', type=Path, action='append', required=True,
                         help='ONNX model or checkpoint; repeat; the first is the baseline')
    _add_labelled_data_arguments(compare, split='val')
    compare.add_argument('--block', type=int, default=10,
                         help='consecutive frames per bootstrap block (default: 10, ~10 s '
                              'of CamVid)')
    compare.add_argument('--samples', type=int, default=2000)
    compare.add_argument('--interval', type=float, default=0.9,
                         help='central probability of the reported interval')
    compare.add_argument('--seed', type=int, default=0)
    compare.add_argument('--backend', default='onnxruntime')
    compare.add_argument('--threads', type=int, default=0)
    compare.add_argument('--json')
    compare.set_defaults(func=cmd_compare)

    export = commands.add_parser(
        'export', help='checkpoint (or ONNX model) -> verified ONNX that TensorRT can build',
        description='Write the ONNX contract graph (UINT8 only at its edges) from a training '
                    'checkpoint, or re-write an existing ONNX model (keeping its metadata); '
                    'verify label parity with the source on val frames, TensorRT operators '
                    'and the UINT8 rule.')
    export.add_argument('source', type=Path, help='training checkpoint, or an .onnx model')
    export.add_argument('--output', type=Path, required=True)
    export.add_argument('--fp16', action='store_true',
                        help='write the fp16 copy (what TensorRT builds an fp16 engine from); '
                             'inputs and outputs keep the contract types')
    export.add_argument('--classes', type=Path, default=DEFAULT_CLASSES_PATH)
    export.add_argument('--inference-size', type=int, nargs=2, default=(360, 480),
                        help='H W stored as metadata (checkpoints only)')
    export.add_argument('--data', type=Path, default=DEFAULT_DATA)
    export.add_argument('--parity-frames', type=int, default=8)
    export.set_defaults(func=cmd_export)

    complexity = commands.add_parser('complexity', help='parameters and GFLOPs per arch')
    complexity.add_argument('--arch', action='append')
    complexity.add_argument('--size', type=int, nargs=2, default=(360, 480))
    complexity.add_argument('--classes', type=Path, default=DEFAULT_CLASSES_PATH)
    complexity.add_argument('--json')
    complexity.set_defaults(func=cmd_complexity)

    calibrate = commands.add_parser(
        'calibrate-bias',
        help='fit per-class logit offsets for mIoU on training frames and fold them into '
             'the head bias of a new checkpoint (no run-time cost)')
    calibrate.add_argument('checkpoint', type=Path)
    calibrate.add_argument('--output', type=Path, required=True)
    _add_labelled_data_arguments(
        calibrate, split='train', split_help='fit on this split (keep val for measuring the '
                                             'result)')
    calibrate.add_argument('--step', type=int, default=4,
                           help='sample every STEP-th pixel of each axis')
    calibrate.add_argument('--threads', type=int, default=0)
    calibrate.add_argument('--json')
    calibrate.set_defaults(func=cmd_calibrate_bias)

    ceiling = commands.add_parser(
        'resolution-ceiling',
        help='best per-class IoU of label maps decided per s x s cell and nearest-upsampled '
             '(ground truth; with --model also that network decided per cell)')
    _add_labelled_data_arguments(ceiling, split='val')
    ceiling.add_argument('--strides', type=int, nargs='+', default=(16, 8, 4, 2))
    ceiling.add_argument('--image-scale', type=float, default=1.0)
    ceiling.add_argument('--model', type=Path,
                         help='ONNX model or checkpoint: also score its probabilities decided '
                              'per cell')
    ceiling.add_argument('--threads', type=int, default=0)
    ceiling.add_argument('--json')
    ceiling.set_defaults(func=cmd_resolution_ceiling)

    demo = commands.add_parser('demo', help='stream sample frames through seg_node')
    demo.add_argument('--model', type=Path, default=DEFAULT_MODEL_PATH)
    demo.add_argument('--output', type=Path, default=Path('demo_output'))
    demo.add_argument('--repeats', type=int, default=2)
    demo.set_defaults(func=cmd_demo)

    bench = commands.add_parser('bench', help='latency benchmarks (JSON)')
    bench.add_argument('--model', type=Path, default=DEFAULT_MODEL_PATH)
    bench.add_argument('--frames', type=int, default=40)
    bench.add_argument('--threads', type=int, default=2)
    bench.add_argument('--backend', action='append', metavar='NAME[=MODEL]',
                       help='compare backends instead of e2e, e.g. --backend onnxruntime '
                            '--backend onnxruntime-int8=model_int8.onnx --backend '
                            'torch=run/last.pt --backend tensorrt-fp16 (repeatable; '
                            'tensorrt-fp32/-fp16/-int8 pick the engine precision)')
    bench.add_argument('--json', help='write the JSON here (default: stdout)')
    bench.set_defaults(func=cmd_bench)

    transport = commands.add_parser('bench-transport',
                                    help='frame delivery per size, camera QoS and transport')
    transport.add_argument('--model', type=Path, default=DEFAULT_MODEL_PATH)
    transport.add_argument('--frames', type=int, default=10)
    transport.add_argument('--rate', type=float, default=3.0)
    transport.add_argument('--json')
    transport.set_defaults(func=cmd_bench_transport)
    soak = commands.add_parser(
        'soak', help='seg_node fed CamVid frames at a rate for minutes: served/dropped/'
                     'rejected, memory and latency per period (JSON)')
    soak.add_argument('--model', type=Path, default=DEFAULT_MODEL_PATH)
    soak.add_argument('--minutes', type=float, default=10.0)
    soak.add_argument('--rate', type=float, default=10.0, help='frames per second')
    soak.add_argument('--size', type=int, nargs=2, default=(480, 640),
                      metavar=('HEIGHT', 'WIDTH'), help='frames are resized to this size')
    soak.add_argument('--threads', type=int, default=2, help="the node's num_threads")
    soak.add_argument('--data', type=Path,
                      help='CamVid-format folder whose val frames are sent (default: the '
                           'bundled sample)')
    soak.add_argument('--limit', type=int, default=30, help='val frames loaded, sent in turn')
    soak.add_argument('--period', type=float, default=60.0,
                      help='seconds per report period (default: a minute)')
    soak.add_argument('--json', help='write the JSON here (default: stdout)')
    soak.set_defaults(func=cmd_soak)
    node_bench = commands.add_parser(
        'bench-node', help="the node's own cost per frame: cameras x size x rate (JSON)")
    node_bench.add_argument('--row', action='append', metavar='CAMERASxWxH@HZ',
                            help='e.g. 4x640x480@30 (repeatable; default: 1x640x480@30, '
                                 '1x1920x1080@30, 4x640x480@30)')
    node_bench.add_argument('--seconds', type=float, default=8.0, help='per row')
    node_bench.add_argument('--model', type=Path,
                            help='default: a near-free contract model built by the tool')
    node_bench.add_argument('--param', action='append', default=[], metavar='NAME:=VALUE',
                            help='extra node parameter, e.g. max_batch:=4 (repeatable)')
    node_bench.add_argument('--work-dir', type=Path, default=Path('bench_node_work'))
    node_bench.add_argument('--no-floor', action='store_true',
                            help="skip the transport floor (a bare relay in the node's place)")
    node_bench.add_argument('--json')
    node_bench.set_defaults(func=cmd_bench_node)
    cli_bags.register(commands)
    cli_fleet.register(commands)
    cli_tensorrt.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a seg_tool subcommand; project errors print one line and exit 1."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SegNodeError as err:
        print(f'seg_tool: error: {err}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == '__main__':
    sys.exit(main())
