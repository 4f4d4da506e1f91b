"""``seg_tool build-engine``, ``tensorrt-parity`` and ``quantize``: thin wrappers over modules."""

import argparse
import json
from pathlib import Path

from seg_node.core.classes import DEFAULT_CLASSES_PATH, load_classes
from seg_node.core.errors import ModelLoadError
from seg_node.core.inference.contract import QUANTIZATION_TARGETS
from seg_node.core.inference import engine_cache, tensorrt
from seg_node.core.inference.engine_cache import PRECISIONS
from seg_node.core.inference.tensorrt import TENSORRT_MODULES
from seg_node.tools.cli.common import DEFAULT_DATA, write_json


def cmd_build_engine(args: argparse.Namespace) -> int:
    """Build (or confirm) the cached TensorRT engine of an ONNX model; print its path last."""
    trt = tensorrt.import_tensorrt(args.tensorrt_module)
    request = tensorrt.engine_request(trt, args.model, args.precision, args.engine_dir,
                                      shapes=(args.min, args.opt, args.max))
    existing = None if args.force else engine_cache.find_engine(
        request.engine_dir, request.model_path, request.key)
    if existing is None:
        summary = tensorrt.build_engine(args.model, args.precision, None, args.workspace_mb,
                                        args.timing_cache, tensorrt_module=trt.__name__,
                                        request=request)
        print(summary.describe())
        existing = summary.engine
    else:
        print(f'up to date ({args.precision}, profile {request.key.profile.describe()}, '
              f'{request.key.tensorrt_module} {request.key.tensorrt_version}); pass --force '
              'to rebuild')
    print(existing)
    return 0


# Least share of label pixels a TensorRT engine must give as ONNX Runtime does on the model
# it was built from (int8: ONNX Runtime on the same QDQ file).
PARITY_MINIMUM = {'fp32': 0.999, 'fp16': 0.99, 'int8': 0.95}


def cmd_tensorrt_parity(args: argparse.Namespace) -> int:
    """Compare a TensorRT engine's labels with ONNX Runtime's on real frames; JSON; exit 1 if low.

    Needs a GPU (the engine runs); the engine is built first if the cache has none.
    """
    from seg_node.core.inference.base import create_backend, label_agreement
    from seg_node.evaluation.dataset import load_split
    frames = load_split(args.data, args.split, args.limit).images
    options = {'tensorrt': {'precision': args.precision, 'engine_cache_dir': args.engine_dir,
                            'tensorrt_module': args.tensorrt_module,
                            'build_engine_if_missing': True}}
    engine = create_backend('tensorrt', args.model, options=options)
    reference = create_backend('onnxruntime', args.model, args.threads)
    agreement, identical = label_agreement(reference, engine, frames)
    minimum = PARITY_MINIMUM[args.precision]
    sidecar = engine_cache.read_sidecar(engine.engine_path)
    report = {'model': str(args.model), 'precision': args.precision,
              'engine': str(engine.engine_path),
              'tensorrt': f'{sidecar["tensorrt_module"]} {sidecar["tensorrt_version"]}',
              'device_name': sidecar['device_name'], 'data': str(args.data),
              'split': args.split, 'frames': len(frames),
              'label_agreement': round(agreement, 6), 'identical_frames': identical,
              'minimum': minimum, 'passed': agreement >= minimum}
    write_json(args.json, report)
    return 0 if report['passed'] else 1


def cmd_quantize(args: argparse.Namespace) -> int:
    """Write a QDQ INT8 model calibrated on real frames; optionally compare it with FP32."""
    from seg_node.training.quantize import calibration_images, compare_int8, quantize_model
    suffix = '_int8' if args.target == 'tensorrt' else '_int8_cpu'
    output = args.output or args.model.with_name(f'{args.model.stem}{suffix}.onnx')
    images = calibration_images(args.calibration_images, args.split, args.count)
    report = quantize_model(args.model, output, images, args.target)
    print(f'wrote {report.path} ({report.path.stat().st_size / 1e6:.2f} MB): '
          f'{report.quantized_convs}/{report.convs} Conv quantised, calibrated on '
          f'{report.frames} frames from {args.calibration_images}')
    if report.unsupported:
        raise ModelLoadError(f'TensorRT cannot build {report.path}: {report.unsupported}')
    if args.compare_on is not None:
        from seg_node.evaluation.dataset import load_split
        data = load_split(args.compare_on, args.compare_split, args.compare_limit)
        print(json.dumps(compare_int8(args.model, report.path, data.images, data.labels,
                                      load_classes(args.classes), args.threads), indent=2))
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``build-engine`` and ``quantize`` subcommands to seg_tool's subparsers."""
    build = commands.add_parser(
        'build-engine', help='ONNX -> cached TensorRT engine (prints its path last)',
        description='Build a strongly typed TensorRT engine of MODEL into the engine folder, '
                    'keyed by the ONNX hash, TensorRT module and version, GPU, precision and '
                    'profile (reused if one already matches). The precision is carried by the '
                    'model file: fp16 builds its fp16 copy (made in the engine folder), int8 '
                    'needs the QDQ model of `seg_tool quantize --target tensorrt`. With '
                    'tensorrt_rtx the build runs ahead of time on the CPU (no GPU needed) and '
                    'the engine is portable across supported GPUs.')
    build.add_argument('model', type=Path, help='ONNX model (a QDQ model for int8)')
    build.add_argument('--precision', choices=PRECISIONS, default='fp16')
    build.add_argument('--engine-dir', type=Path,
                       help='engine folder (default: $ROS_HOME/seg_node/engines, else '
                            '$XDG_CACHE_HOME/seg_node/engines, else ~/.ros/seg_node/engines)')
    build.add_argument('--tensorrt-module', choices=TENSORRT_MODULES,
                       help='TensorRT library to build with (default: tensorrt if installed, '
                            'else tensorrt_rtx)')
    build.add_argument('--min', help='smallest input HxW (default: opt)')
    build.add_argument('--opt', help="input HxW to tune for (default: the model's inference "
                                     'size, else 360x480)')
    build.add_argument('--max', help='largest input HxW (default: opt)')
    build.add_argument('--workspace-mb', type=int, default=2048)
    build.add_argument('--timing-cache', type=Path,
                       help='timing cache file (default: one per TensorRT module, version and '
                            'GPU architecture in the engine folder)')
    build.add_argument('--force', action='store_true', help='rebuild even if cached')
    build.set_defaults(func=cmd_build_engine)

    parity = commands.add_parser(
        'tensorrt-parity', help='TensorRT vs ONNX Runtime labels on real frames (GPU; JSON)',
        description="Run MODEL's TensorRT engine (built first if missing) and ONNX Runtime on "
                    'the same frames and report the share of equal label pixels; exit 1 below '
                    + ', '.join(f'{value:.1%} at {name}' for name, value in
                                PARITY_MINIMUM.items()) + '.')
    parity.add_argument('model', type=Path, help='ONNX model (the QDQ model for int8)')
    parity.add_argument('--precision', choices=PRECISIONS, default='fp16')
    parity.add_argument('--engine-dir', type=Path, help='engine folder (as build-engine)')
    parity.add_argument('--tensorrt-module', choices=TENSORRT_MODULES)
    parity.add_argument('--data', type=Path, default=DEFAULT_DATA)
    parity.add_argument('--split', default='val')
    parity.add_argument('--limit', type=int)
    parity.add_argument('--threads', type=int, default=0)
    parity.add_argument('--json', help='write the JSON here (default: stdout)')
    parity.set_defaults(func=cmd_tensorrt_parity)

    quantize = commands.add_parser(
        'quantize', help='ONNX -> INT8 QDQ ONNX calibrated on frames, for TensorRT or '
                         '(--target cpu) ONNX Runtime')
    quantize.add_argument('model', type=Path, help='FP32 ONNX model of the contract')
    quantize.add_argument('--calibration-images', type=Path, default=DEFAULT_DATA,
                          help='CamVid-format folder, split file or folder of images')
    quantize.add_argument('--split', default='train',
                          help='split of a CamVid-format folder to calibrate on')
    quantize.add_argument('--count', type=int,
                          help='calibration frames, spread evenly over the source (default: '
                               'a few hundred)')
    quantize.add_argument('--target', choices=QUANTIZATION_TARGETS, default='tensorrt',
                          help='tensorrt: symmetric int8 QDQ on Conv inputs, what TensorRT '
                               'builds its int8 engine from (slower than FP32 in ONNX '
                               'Runtime); cpu: uint8 activations on Conv and Relu, fused into '
                               'integer kernels by ONNX Runtime on the CPU (default: tensorrt)')
    quantize.add_argument('--output', type=Path,
                          help='default: MODEL_int8.onnx (tensorrt) or MODEL_int8_cpu.onnx')
    quantize.add_argument('--compare-on', type=Path, metavar='DATA',
                          help='also print FP32 vs INT8 mIoU and latency (JSON) on DATA')
    quantize.add_argument('--compare-split', default='val')
    quantize.add_argument('--compare-limit', type=int)
    quantize.add_argument('--classes', type=Path, default=DEFAULT_CLASSES_PATH)
    quantize.add_argument('--threads', type=int, default=0)
    quantize.set_defaults(func=cmd_quantize)
