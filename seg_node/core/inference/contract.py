"""The ONNX I/O contract shared by export and every backend.

Input ``image`` uint8 (N, H, W, 3); outputs ``labels`` uint8 (N, H, W), ``confidence``
float32 (N, H, W), ``probabilities`` float32 (N, K, H, W) with K static. Export also writes
metadata: ``class_names`` (JSON list), ``inference_size`` ("HxW": the training size) and
``arch``.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from seg_node.core.errors import ModelLoadError
from seg_node.core.inference.base import CONFIDENCE, LABELS, PROBABILITIES

INPUT_NAME = 'image'
OUTPUT_NAMES = (LABELS, CONFIDENCE, PROBABILITIES)
ONNX_TYPES = {INPUT_NAME: 'tensor(uint8)', LABELS: 'tensor(uint8)',
              CONFIDENCE: 'tensor(float)', PROBABILITIES: 'tensor(float)'}
META_CLASS_NAMES = 'class_names'
META_INFERENCE_SIZE = 'inference_size'
META_ARCH = 'arch'
# Runtimes an INT8 copy of a model can be written for (``seg_tool quantize --target``):
# 'tensorrt' (symmetric int8 QDQ that TensorRT builds from) or 'cpu' (the uint8 placement
# ONNX Runtime fuses into integer kernels).
QUANTIZATION_TARGETS = ('tensorrt', 'cpu')


@dataclass(frozen=True)
class ModelInfo:
    """What a backend knows about a loaded model.

    Attributes:
        input_name: the image input's name.
        num_classes: K, the class axis of ``probabilities``.
        class_names: class names stored in the model, or None if absent.
        inference_size: (H, W) the model was trained at, or None if absent.
        arch: architecture name, or 'unknown'.

    """

    input_name: str
    num_classes: int
    class_names: tuple[str, ...] | None
    inference_size: tuple[int, int] | None
    arch: str


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``"HxW"`` into (H, W)."""
    height, width = (int(v) for v in text.lower().split('x'))
    return height, width


def check_contract(model_path: Path, inputs: dict[str, str],
                   outputs: dict[str, tuple[str, list]],
                   metadata: dict[str, str]) -> ModelInfo:
    """Validate a model's I/O against the contract and parse its metadata.

    Args:
        model_path: for error messages.
        inputs: input name -> ONNX type string (e.g. 'tensor(uint8)').
        outputs: output name -> (ONNX type string, shape list).
        metadata: the model's custom metadata.

    Raises:
        ModelLoadError: a name, type or the class axis does not match.

    """
    expected = {INPUT_NAME: inputs.get(INPUT_NAME)} | {
        name: outputs.get(name, (None, None))[0] for name in OUTPUT_NAMES}
    for name, found in expected.items():
        if found != ONNX_TYPES[name]:
            raise ModelLoadError(
                f'{model_path} does not follow the seg_node ONNX contract: {name!r} is '
                f'{found or "missing"}, expected {ONNX_TYPES[name]}; export it with '
                '`seg_tool export`')
    class_axis = outputs[PROBABILITIES][1][1]
    if not isinstance(class_axis, int):
        raise ModelLoadError(f'{model_path}: probabilities need a static class axis')
    try:
        class_names = (tuple(json.loads(metadata[META_CLASS_NAMES]))
                       if META_CLASS_NAMES in metadata else None)
        size = (parse_size(metadata[META_INFERENCE_SIZE])
                if META_INFERENCE_SIZE in metadata else None)
    except ValueError as err:
        raise ModelLoadError(f'{model_path}: malformed metadata ({err})') from err
    if class_names is not None and len(class_names) != class_axis:
        raise ModelLoadError(f'{model_path}: {len(class_names)} class names in metadata but '
                             f'{class_axis} probability channels')
    return ModelInfo(INPUT_NAME, class_axis, class_names, size,
                     metadata.get(META_ARCH, 'unknown'))
