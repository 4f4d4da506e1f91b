"""INT8 by explicit quantisation: QDQ ONNX models for TensorRT or ONNX Runtime's CPU kernels.

``seg_tool quantize`` calibrates activation ranges on real camera frames fed through the
model's uint8 ``image`` input and writes a model with QuantizeLinear/DequantizeLinear pairs on
the inputs of every Conv only: activations per-tensor and weights per output channel, both
symmetric int8 (zero point 0) as TensorRT requires. Everything else computes in float: the
input normalisation, the residual additions (a block input that also feeds its residual Add
reaches it through the Conv's Q/DQ pair, the placement TensorRT fuses into an int8 conv + add),
the upsampling and the whole post-processing tail (softmax, resize, argmax, max), so the
outputs keep the contract's dtypes and the argmax works on float probabilities. Conv biases
stay float too, since TensorRT rejects an int32 DequantizeLinear. The file keeps the model's
I/O contract and metadata, and TensorRT builds an INT8 engine from it
(``seg_tool build-engine MODEL_int8.onnx --precision int8``).

ONNX Runtime on the CPU cannot fuse that placement into integer kernels (the Conv outputs stay
float), so it runs slower than FP32. ``target='cpu'`` writes the placement ONNX Runtime does
fuse into QLinearConv: uint8 activations (asymmetric), int8 per-channel weights, Q/DQ on the
inputs and outputs of every Conv and Relu (a Relu after a Conv folds into the Conv's output
range), int32 biases. The head's Conv keeps float weights and float outputs, so the in-graph
softmax and argmax see unquantised logits. TensorRT rejects this file (it needs symmetric
int8).

:func:`compare_int8` measures what quantisation costs and gains on the CPU: mIoU and median
latency of the FP32 and INT8 models, interleaved frame by frame in one run.
"""

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnx
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                      QuantType, quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process

from seg_node.core.classes import ClassList
from seg_node.evaluation.dataset import read_rgb, split_pairs
from seg_node.core.errors import ConfigError, ModelLoadError
from seg_node.evaluation.scoring import evaluate_frames, latency_percentiles
from seg_node.core.inference.contract import INPUT_NAME, QUANTIZATION_TARGETS
from seg_node.models.deploy_graph import operator_report, uint8_edge_violation
from seg_node.core.inference.onnxruntime import OnnxRuntimeBackend
from seg_node.evaluation.metrics import ConfusionMatrix, scores_to_dict

DEFAULT_CALIBRATION_COUNT = 300
IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp')
META_QUANTIZATION = 'quantization'
QUANTIZED_OPERATORS = ['Conv']


def calibration_images(source: Path, split: str = 'train',
                       count: int | None = None) -> list[Path]:
    """Pick up to ``count`` calibration frames spread evenly over a source.

    Args:
        source: a CamVid-format root (``<split>.txt`` or ``<split>/``), a split file, or a
            folder of images.
        split: the split used when ``source`` is a CamVid-format root.
        count: how many frames at most; None: :data:`DEFAULT_CALIBRATION_COUNT`.

    Raises:
        ConfigError: the source holds no images, or ``count`` < 1.
    """
    count = DEFAULT_CALIBRATION_COUNT if count is None else count
    if count < 1:
        raise ConfigError(f'--count must be at least 1, not {count}')
    source = Path(source)
    if source.is_dir() and not ((source / f'{split}.txt').exists() or (source / split).is_dir()):
        paths = sorted(path for path in source.iterdir()
                       if path.suffix.lower() in IMAGE_SUFFIXES)
    else:
        paths = [image for image, _ in split_pairs(source, split)]
    if not paths:
        raise ConfigError(f'no calibration images in {source}; pass a CamVid-format folder, a '
                          'split file or a folder of images')
    picks = np.unique(np.linspace(0, len(paths) - 1, min(count, len(paths))).round())
    return [paths[int(index)] for index in picks]


class FrameReader(CalibrationDataReader):
    """Feeds frames to the calibrator as the model's input: (1, H, W, 3) uint8 RGB."""

    def __init__(self, paths: list[Path], size: tuple[int, int] | None) -> None:
        """Read ``paths`` lazily, resized to ``size`` (H, W) like the node does, if given."""
        self.paths = paths
        self.size = size
        self._frames = self._read()

    def _read(self) -> Iterator[dict[str, np.ndarray]]:
        for path in self.paths:
            image = read_rgb(path)
            if self.size is not None and image.shape[:2] != self.size:
                image = cv2.resize(image, (self.size[1], self.size[0]),
                                   interpolation=cv2.INTER_AREA)
            yield {INPUT_NAME: image[None]}

    def get_next(self) -> dict[str, np.ndarray] | None:
        """Return the next input feed, or None when all frames were given."""
        return next(self._frames, None)

    def rewind(self) -> None:
        """Start again from the first frame."""
        self._frames = self._read()


@dataclass
class QuantizeReport:
    """What quantisation produced.

    Attributes:
        path: the QDQ model.
        frames: calibration frames used.
        quantized_convs: Conv nodes whose inputs are quantised.
        convs: all Conv nodes.
        unsupported: what TensorRT's parser would reject: operators, or the node breaking
            the UINT8-at-the-edges rule (empty when fine; checked for the ``'tensorrt'``
            target only, since TensorRT never reads the ``'cpu'`` file).
    """

    path: Path
    frames: int
    quantized_convs: int
    convs: int
    unsupported: list[str]


def quantized_conv_count(graph: onnx.GraphProto) -> tuple[int, int]:
    """Return (Convs whose data and weight inputs come from DequantizeLinear, all Convs)."""
    producers = {output: node.op_type for node in graph.node for output in node.output}
    convs = [node for node in graph.node if node.op_type == 'Conv']
    quantized = sum(all(producers.get(name) == 'DequantizeLinear' for name in node.input[:2])
                    for node in convs)
    return quantized, len(convs)


def consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    """Map each tensor name to the nodes that read it."""
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    return readers


def head_convs(graph: onnx.GraphProto) -> list[str]:
    """Return the names of the Conv nodes whose output feeds the in-graph softmax."""
    readers = consumers(graph)
    return [node.name for node in graph.node if node.op_type == 'Conv'
            and 'ReduceMax' in {reader.op_type for reader in readers.get(node.output[0], ())}]


def quantize_model(model_path: Path, output_path: Path, image_paths: list[Path],
                   target: str = 'tensorrt') -> QuantizeReport:
    """Write a QDQ INT8 copy of an ONNX model of the contract, calibrated on ``image_paths``.

    Args:
        model_path: the FP32 model.
        output_path: where the QDQ model goes.
        image_paths: calibration frames; resized to the model's inference size if needed.
        target: ``'tensorrt'`` or ``'cpu'`` (see the module docstring).

    Raises:
        ConfigError: ``target`` is not one of :data:`QUANTIZATION_TARGETS`.
        ModelLoadError: the input is not a model of the contract, or the result is not.
    """
    if target not in QUANTIZATION_TARGETS:
        raise ConfigError(f'unknown quantisation target {target!r}; valid: '
                          f'{", ".join(QUANTIZATION_TARGETS)}')
    info = OnnxRuntimeBackend(model_path).info
    source = onnx.load(str(model_path))
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix='seg_quantize_') as folder:
        # Constant folding turns the exporter's Identity-shared biases back into initialisers,
        # so every Conv gets the same QDQ pattern. Symbolic shape inference cannot follow the
        # dynamic padding arithmetic and is not needed for Conv-only quantisation.
        prepared = Path(folder) / 'prepared.onnx'
        quant_pre_process(str(model_path), str(prepared), skip_symbolic_shape=True)
        if target == 'tensorrt':
            placement = {'op_types_to_quantize': QUANTIZED_OPERATORS,
                         'activation_type': QuantType.QInt8,
                         'extra_options': {'ActivationSymmetric': True, 'WeightSymmetric': True,
                                           'QuantizeBias': False,
                                           'OpTypesToExcludeOutputQuantization':
                                               QUANTIZED_OPERATORS}}
            description = 'int8 QDQ on Conv inputs, symmetric, per-channel weights'
        else:
            placement = {'op_types_to_quantize': ['Conv', 'Relu'],
                         'activation_type': QuantType.QUInt8,
                         'nodes_to_exclude': head_convs(onnx.load(str(prepared)).graph)}
            description = ('int8 QDQ for ONNX Runtime CPU: uint8 activations, per-channel int8 '
                           'weights, Conv and Relu, head in float')
        quantize_static(
            str(prepared), str(output_path), FrameReader(image_paths, info.inference_size),
            quant_format=QuantFormat.QDQ, per_channel=True, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax, **placement)
    quantized = onnx.load(str(output_path))
    metadata = {prop.key: prop.value for prop in source.metadata_props}
    metadata[META_QUANTIZATION] = f'{description}, {len(image_paths)} calibration frames'
    del quantized.metadata_props[:]
    onnx.helper.set_model_props(quantized, metadata)
    onnx.save(quantized, str(output_path))
    quantized_info = OnnxRuntimeBackend(output_path).info
    if quantized_info != info:
        raise ModelLoadError(f'{output_path} lost the model contract: {quantized_info} '
                             f'differs from {info}')
    done, convs = quantized_conv_count(quantized.graph)
    unsupported = []
    if target == 'tensorrt':
        violation = uint8_edge_violation(quantized)
        unsupported = operator_report(quantized)[1] + ([violation] if violation else [])
    return QuantizeReport(output_path, len(image_paths), done, convs, unsupported)


def compare_int8(fp32_path: Path, int8_path: Path, frames: list[np.ndarray],
                 labels: list[np.ndarray], classes: ClassList, threads: int = 0) -> dict:
    """Score and time an FP32 model and its INT8 copy side by side with ONNX Runtime on CPU.

    Both models run on every frame, alternating which goes first, so load changes on the
    machine affect both alike.

    Args:
        fp32_path: the FP32 model.
        int8_path: the QDQ INT8 model.
        frames: (H, W, 3) uint8 RGB images.
        labels: matching (H, W) uint8 ground-truth ids.
        classes: the class list (K and names).
        threads: ONNX Runtime intra-op threads for both; 0 lets it decide.

    Returns:
        ``{"fp32": {...}, "int8": {...}, "miou_drop_points", "speedup_p50", "frames",
        "threads"}``; each model's entry holds its path, metrics (``miou``, per-class IoU,
        accuracies) and ``latency_ms`` percentiles.
    """
    if not frames or len(frames) != len(labels):
        raise ConfigError(f'compare needs matching frames and labels, got {len(frames)} and '
                          f'{len(labels)}')
    paths = {'fp32': Path(fp32_path), 'int8': Path(int8_path)}
    # No spinning: an idle session's spinning threads would steal the other's cores.
    backends = {name: OnnxRuntimeBackend(path, threads, allow_spinning=False)
                for name, path in paths.items()}
    matrices = {name: ConfusionMatrix(classes.num_classes) for name in backends}
    latencies: dict[str, list[float]] = {name: [] for name in backends}
    for backend in backends.values():
        backend.infer(frames[0], confidence=False)
    for index, pair in enumerate(zip(frames, labels, strict=True)):
        order = list(backends) if index % 2 == 0 else list(reversed(backends))
        for name in order:
            matrix, seconds = evaluate_frames(backends[name].infer, [pair], classes.num_classes)
            matrices[name].merge(matrix)
            latencies[name] += seconds
    result: dict = {name: {'model': str(paths[name]),
                           **scores_to_dict(matrices[name].scores(), classes.names),
                           'latency_ms': latency_percentiles(latencies[name])}
                    for name in backends}
    fp32, int8 = result['fp32'], result['int8']
    result['miou_drop_points'] = (None if fp32['miou'] is None or int8['miou'] is None
                                  else round(100.0 * (fp32['miou'] - int8['miou']), 3))
    result['speedup_p50'] = round(fp32['latency_ms']['p50'] / int8['latency_ms']['p50'], 3)
    result['frames'] = len(frames)
    result['threads'] = threads
    return result
