"""Export a checkpoint to the ONNX contract and verify the result (``seg_tool export``).

Verification: the ONNX checker, label parity with PyTorch on real frames, and that every
operator is one TensorRT 10's ONNX parser supports (so the same file builds an engine).
"""

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from seg_node.core.inference.contract import (INPUT_NAME, META_ARCH, META_CLASS_NAMES,
                                              META_INFERENCE_SIZE, OUTPUT_NAMES)
from seg_node.core.inference.onnxruntime import OnnxRuntimeBackend
from seg_node.models.torch_backend import TorchBackend
from seg_node.models.deploy import DeployModel

OPSET = 17
# Operators of the ONNX standard that TensorRT 10's ONNX parser imports (its operator
# support matrix). MaxUnpool, and MaxPool's second (indices) output, are absent: that is why
# SegNet's unpooling is written with comparisons instead.
TENSORRT_OPERATORS = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization
Cast Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum
DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten
Floor Gather GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalMaxPool Greater
GreaterOrEqual GroupNormalization HardSigmoid HardSwish Identity If InstanceNormalization
IsInf IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN MatMul Max
MaxPool Mean Min Mish Mod Mul Neg Not OneHot Or Pad Pow PRelu QuantizeLinear Range
Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin
ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize Round ScatterElements ScatterND
Selu Shape Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split
Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample
Where Xor
""".split())


@dataclass
class ExportReport:
    """What verification found.

    Attributes:
        path: the ONNX file.
        label_agreement: fraction of pixels where ONNX Runtime and PyTorch labels agree.
        operators: sorted operator types used by the graph.
        unsupported: operators TensorRT's parser would reject (empty when fine).

    """

    path: Path
    label_agreement: float
    operators: list[str]
    unsupported: list[str]


def export_onnx(model: DeployModel, path: Path, class_names: list[str] | tuple[str, ...],
                inference_size: tuple[int, int], arch: str) -> Path:
    """Write ``model`` as an ONNX file of the contract, with metadata.

    Args:
        model: the deploy wrapper around a trained network.
        path: output ``.onnx`` path.
        class_names: K class names, stored as metadata.
        inference_size: (H, W) the network was trained for; the node's default input size.
        arch: architecture name, stored as metadata.

    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros((1, *inference_size, 3), dtype=torch.uint8)
    dynamic = {0: 'batch', 1: 'height', 2: 'width'}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter('ignore')
        torch.onnx.export(model.eval(), (example,), str(path), opset_version=OPSET,
                          input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                          dynamic_axes={INPUT_NAME: dynamic, OUTPUT_NAMES[0]: dynamic,
                                        OUTPUT_NAMES[1]: dynamic,
                                        OUTPUT_NAMES[2]: {0: 'batch', 2: 'height',
                                                          3: 'width'}},
                          dynamo=False)
    graph = onnx.load(str(path))
    metadata = {META_CLASS_NAMES: json.dumps(list(class_names)),
                META_INFERENCE_SIZE: f'{inference_size[0]}x{inference_size[1]}',
                META_ARCH: arch}
    onnx.helper.set_model_props(graph, metadata)
    onnx.save(graph, str(path))
    return path


def operator_report(path: Path) -> tuple[list[str], list[str]]:
    """Return the graph's operator types and those TensorRT's parser does not support."""
    graph = onnx.load(str(path)).graph
    operators = sorted({node.op_type for node in graph.node})
    unsupported = [op for op in operators if op not in TENSORRT_OPERATORS]
    unsupported += [f'{node.op_type} with indices output' for node in graph.node
                    if node.op_type == 'MaxPool' and len(node.output) > 1]
    return operators, unsupported


def verify_export(path: Path, model: DeployModel, images: list[np.ndarray]) -> ExportReport:
    """Check the ONNX file: checker, parity with PyTorch on ``images``, TensorRT operators.

    Args:
        path: exported ONNX file.
        model: the PyTorch deploy model it came from.
        images: (H, W, 3) uint8 RGB frames to compare labels on.

    """
    onnx.checker.check_model(str(path), full_check=True)
    onnx_backend = OnnxRuntimeBackend(path)
    torch_backend = TorchBackend(None, model=model)
    agree = total = 0
    for image in images:
        onnx_labels = onnx_backend.infer(image, confidence=False).labels
        torch_labels = torch_backend.infer(image, confidence=False).labels
        agree += int((onnx_labels == torch_labels).sum())
        total += onnx_labels.size
    operators, unsupported = operator_report(path)
    return ExportReport(Path(path), agree / max(total, 1), operators, unsupported)
