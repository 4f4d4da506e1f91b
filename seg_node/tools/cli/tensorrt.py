"""``seg_tool build-engine`` and ``seg_tool quantize``: thin wrappers over their modules."""

import argparse
import json
from pathlib import Path

from seg_node.core.classes import DEFAULT_CLASSES_PATH, load_classes
from seg_node.core.errors import ModelLoadError
from seg_node.core.inference.contract import QUANTIZATION_TARGETS
from seg_node.core.inference.engine_cache import PRECISIONS
from seg_node.tools.cli.common import DEFAULT_DATA


def cmd_build_engine(args: argparse.Namespace) -> int:
    """Build (or confirm) the cached TensorRT engine of an ONNX model."""
    from seg_node.core.inference import engine_cache, tensorrt
    trt, cudart = tensorrt.import_runtime()
    info, _ = tensorrt.read_onnx(args.model)
    profile = tensorrt.profile_for(info, args.min, args.opt, args.max)
    key = tensorrt.engine_key(args.model, args.precision, profile,
                              tensorrt.environment(trt, cudart))
    existing = None if args.force else engine_cache.find_engine(args.model, key)
    if existing is not None:
        print(f'up to date: {existing} ({args.precision}, profile {profile.describe()}); '
              'pass --force to rebuild')
        return 0
    summary = tensorrt.build_engine(args.model, args.precision, profile, args.workspace_mb,
                                    args.timing_cache)
    print(summary.describe())
    return 0


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
        raise ModelLoadError(f'{report.path} uses operators TensorRT cannot parse: '
                             f'{report.unsupported}')
    if args.compare_on is not None:
        from seg_node.evaluation.dataset import load_split
        data = load_split(args.compare_on, args.compare_split, args.compare_limit)
        print(json.dumps(compare_int8(args.model, report.path, data.images, data.labels,
                                      load_classes(args.classes), args.threads), indent=2))
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``build-engine`` and ``quantize`` subcommands to seg_tool's subparsers."""
    build = commands.add_parser(
        'build-engine', help='ONNX -> cached TensorRT engine for this GPU',
        description='Build a TensorRT engine next to MODEL, keyed by the ONNX hash, TensorRT '
                    'version, GPU, precision and profile (reused if one already matches).')
    build.add_argument('model', type=Path, help='ONNX model (a QDQ model for int8)')
    build.add_argument('--precision', choices=PRECISIONS, default='fp16')
    build.add_argument('--min', help='smallest input HxW (default: opt)')
    build.add_argument('--opt', help="input HxW to tune for (default: the model's inference "
                                     'size, else 360x480)')
    build.add_argument('--max', help='largest input HxW (default: opt)')
    build.add_argument('--workspace-mb', type=int, default=2048)
    build.add_argument('--timing-cache', type=Path,
                       help='timing cache file (default: one per TensorRT version and GPU '
                            'architecture beside the model)')
    build.add_argument('--force', action='store_true', help='rebuild even if cached')
    build.set_defaults(func=cmd_build_engine)

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
