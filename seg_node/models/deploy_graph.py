"""What TensorRT needs of a contract ONNX graph, and the rewrites that give it (torch-free).

TensorRT builds a *strongly typed* network: every tensor keeps the type the ONNX file gives
it, so the file carries the precision (fp32, an fp16 copy, or int8 QDQ) and no builder flag
changes it. Two rules follow from what its ONNX parser accepts:

- Operators: only those in :data:`TENSORRT_OPERATORS` (MaxPool without an indices output).
- UINT8 only at the graph's edges: the uint8 ``image`` input may feed nothing but a Cast, and
  the uint8 ``labels`` output must come straight from a Cast; no tensor inside is uint8.
  TensorRT refuses a uint8 tensor anywhere else ("first input has type UInt8").

:func:`move_uint8_to_edges` rewrites a graph into that form: a Cast commutes exactly with the
data-movement operators (:data:`LAYOUT_OPERATORS`), so it is moved to the input (cast to
float, then transpose) and to the output (crop the int64 argmax, then cast to uint8), and
``Shape`` reads the cast image instead of the uint8 one. :func:`uint8_edge_violation` names
the first node that still breaks the rule. :func:`fp16_copy` writes the fp16 model, whose
inputs and outputs keep the contract's types. ``seg_tool export`` runs all of them.
"""

import os
from pathlib import Path

import onnx
from onnx import TensorProto

from seg_node.core.errors import ConfigError, ModelLoadError

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
# Operators that only move or select elements (data input first): a Cast commutes with them.
LAYOUT_OPERATORS = frozenset({'Transpose', 'Slice', 'Reshape', 'Squeeze', 'Unsqueeze',
                              'Flatten', 'Identity'})
MODEL_PRECISIONS = ('fp32', 'fp16', 'int8')


def load(model: Path | onnx.ModelProto) -> onnx.ModelProto:
    """Return ``model`` itself or the model read from that path.

    Raises:
        ModelLoadError: the file cannot be read as ONNX.
    """
    if isinstance(model, onnx.ModelProto):
        return model
    try:
        return onnx.load(str(model))
    except Exception as err:  # onnx raises DecodeError, OSError, ...
        raise ModelLoadError(f'cannot read ONNX model {model}: {err}') from err


def operator_report(model: Path | onnx.ModelProto) -> tuple[list[str], list[str]]:
    """Return the graph's operator types and those TensorRT's parser does not support."""
    graph = load(model).graph
    operators = sorted({node.op_type for node in graph.node})
    unsupported = [op for op in operators if op not in TENSORRT_OPERATORS]
    unsupported += [f'{node.op_type} with indices output' for node in graph.node
                    if node.op_type == 'MaxPool' and len(node.output) > 1]
    return operators, unsupported


def _cast_to(node: onnx.NodeProto) -> int | None:
    """Return a Cast node's target element type, None for other nodes."""
    if node.op_type != 'Cast':
        return None
    return next(onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == 'to')


def _readers(graph: onnx.GraphProto, name: str) -> list[onnx.NodeProto]:
    return [node for node in graph.node if name in node.input]


def _producer(graph: onnx.GraphProto, name: str) -> onnx.NodeProto | None:
    return next((node for node in graph.node if name in node.output), None)


def _uint8_edges(graph: onnx.GraphProto) -> tuple[list[str], list[str]]:
    """Return the names of the graph's uint8 inputs and uint8 outputs."""
    def uint8(values: list) -> list[str]:
        return [v.name for v in values if v.type.tensor_type.elem_type == TensorProto.UINT8]
    return uint8(graph.input), uint8(graph.output)


def uint8_edge_violation(model: Path | onnx.ModelProto) -> str | None:
    """Describe the first node that breaks the UINT8-at-the-edges rule, or None.

    Returns:
        One line naming the node (and its operator) that reads a uint8 input other than a
        Cast, produces a uint8 output other than a Cast, or makes a uint8 tensor inside the
        graph; None when the graph follows the rule.
    """
    model = load(model)
    graph = model.graph
    inputs, outputs = _uint8_edges(graph)
    for name in inputs:
        for node in _readers(graph, name):
            if node.op_type != 'Cast':
                return (f"node '{node.name}' ({node.op_type}) reads the uint8 input "
                        f"'{name}': only a Cast may")
    for name in outputs:
        node = _producer(graph, name)
        if node is None or node.op_type != 'Cast':
            found = 'nothing' if node is None else f"node '{node.name}' ({node.op_type})"
            return f"the uint8 output '{name}' is produced by {found}, not a Cast"
    typed = onnx.shape_inference.infer_shapes(model).graph.value_info
    edges = set(inputs) | set(outputs)
    for value in typed:
        if value.type.tensor_type.elem_type == TensorProto.UINT8 and value.name not in edges:
            node = _producer(graph, value.name)
            return (f"node '{node.name}' ({node.op_type}) makes the uint8 tensor "
                    f"'{value.name}' inside the graph")
    return None


def _swap(graph: onnx.GraphProto, first: onnx.NodeProto, second: onnx.NodeProto) -> None:
    """Run ``second`` before ``first`` where ``first``'s output is ``second``'s data input.

    ``x -first-> y -second-> z`` becomes ``x -second-> y -first-> z`` (``y`` changes type);
    ``first`` is re-inserted right after ``second``, which keeps the node list topological.
    The graph's nodes are rebuilt, so node objects held from before are stale afterwards.
    """
    source, middle, target = first.input[0], first.output[0], second.output[0]
    second.input[0], second.output[0] = source, middle
    first.input[0], first.output[0] = middle, target
    nodes = list(graph.node)
    nodes.remove(first)
    nodes.insert(nodes.index(second) + 1, first)
    del graph.node[:]
    graph.node.extend(nodes)
    for value in [v for v in graph.value_info if v.name in (middle, target)]:
        graph.value_info.remove(value)


def move_uint8_to_edges(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite ``model`` in place so its uint8 tensors are only the input and output edges.

    Input side: a layout operator whose output feeds only a Cast runs after that Cast
    instead (``image -> Transpose -> Cast`` becomes ``image -> Cast -> Transpose``), and
    ``Shape`` reads the cast image. Output side: a Cast to uint8 feeding only a layout
    operator moves after it (``ArgMax -> Cast -> Slice -> labels`` becomes ``ArgMax -> Slice
    -> Cast -> labels``). Values are unchanged: Cast commutes with element selection. A graph
    that already follows the rule is left as it is.

    Returns:
        ``model``; check it with :func:`uint8_edge_violation`.
    """
    graph = model.graph
    inputs, outputs = _uint8_edges(graph)
    kept = {value.name for value in graph.output}
    for name in inputs:
        moved = True
        while moved:
            moved = False
            for layout in _readers(graph, name):
                readers = _readers(graph, layout.output[0])
                if (layout.op_type in LAYOUT_OPERATORS and layout.input[0] == name
                        and layout.output[0] not in kept and len(readers) == 1
                        and readers[0].op_type == 'Cast'):
                    _swap(graph, layout, readers[0])
                    moved = True
                    break
        casts = [node for node in _readers(graph, name) if node.op_type == 'Cast']
        if len(casts) == 1:
            cast = casts[0]
            for node in _readers(graph, name):
                if node.op_type == 'Shape':
                    node.input[0] = cast.output[0]
            graph.node.remove(cast)
            graph.node.insert(0, cast)
    moved = True
    while moved and outputs:
        moved = False
        for cast in [node for node in graph.node if _cast_to(node) == TensorProto.UINT8]:
            readers = _readers(graph, cast.output[0])
            if (cast.output[0] not in kept and len(readers) == 1
                    and readers[0].op_type in LAYOUT_OPERATORS
                    and readers[0].input[0] == cast.output[0]):
                _swap(graph, cast, readers[0])
                moved = True
                break
    return model


def model_precision(model: Path | onnx.ModelProto) -> str:
    """Return the precision a model file carries: int8 (QDQ), fp16 or fp32.

    int8: the graph has QuantizeLinear nodes; fp16: it has fp16 initialisers or casts to
    fp16; fp32 otherwise.
    """
    graph = load(model).graph
    if any(node.op_type == 'QuantizeLinear' for node in graph.node):
        return 'int8'
    if (any(tensor.data_type == TensorProto.FLOAT16 for tensor in graph.initializer)
            or any(_cast_to(node) == TensorProto.FLOAT16 for node in graph.node)):
        return 'fp16'
    return 'fp32'


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return an fp16 copy of an fp32 contract model; inputs and outputs keep their types.

    Weights and activations become fp16 (the image is cast straight to fp16); Cast nodes on
    the fp32 outputs keep ``confidence`` and ``probabilities`` float32, and Resize scales stay
    float32 as ONNX requires. Metadata is kept.

    Raises:
        ConfigError: the model is not fp32 (already fp16, or a QDQ int8 model).
    """
    from onnxruntime.transformers.float16 import convert_float_to_float16
    precision = model_precision(model)
    if precision != 'fp32':
        raise ConfigError(f'only an fp32 model can be converted to fp16; this one is '
                          f'{precision}')
    converted = convert_float_to_float16(model, keep_io_types=True)
    _sort_topologically(converted.graph)
    onnx.checker.check_model(converted)
    return converted


def _sort_topologically(graph: onnx.GraphProto) -> None:
    """Reorder ``graph.node`` so every node follows the producers of its inputs (stable)."""
    known = {value.name for value in graph.input} | {t.name for t in graph.initializer} | {''}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [node for node in pending if set(node.input) <= known]
        if not ready:
            raise ModelLoadError(f'ONNX graph has a cycle or an undefined input at node '
                                 f"'{pending[0].name}'")
        for node in ready:
            pending.remove(node)
            known.update(node.output)
        ordered += ready
    del graph.node[:]
    graph.node.extend(ordered)


def fp16_copy(model_path: Path, output: Path) -> Path:
    """Write the fp16 copy of the fp32 model ``model_path`` to ``output`` (atomically).

    Raises:
        ModelLoadError: the file cannot be read.
        ConfigError: it is not an fp32 model.
    """
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    converted = to_fp16(load(model_path))
    temporary = output.with_name(f'.{output.name}.{os.getpid()}.tmp')
    onnx.save(converted, str(temporary))
    temporary.replace(output)
    return output


def model_for_precision(model_path: Path, precision: str, copies_dir: Path) -> Path:
    """Return the model file that carries ``precision``: the file itself, or its fp16 copy.

    An fp32 model asked for at fp16 gets its fp16 copy, written once into ``copies_dir`` as
    ``<stem>.fp16.<source sha256 prefix>.onnx``. Other mismatches are refused: int8 needs the
    QDQ file ``seg_tool quantize --target tensorrt`` writes (calibrated on real frames).

    Raises:
        ConfigError: an unknown precision, or one this file cannot give.
        ModelLoadError: the file cannot be read.
    """
    from seg_node.core.inference.engine_cache import file_sha256
    if precision not in MODEL_PRECISIONS:
        raise ConfigError(f'precision {precision!r} is invalid; choose one of '
                          + ', '.join(MODEL_PRECISIONS))
    model_path = Path(model_path)
    found = model_precision(model_path)
    if found == precision:
        return model_path
    if (found, precision) == ('fp32', 'fp16'):
        copy = Path(copies_dir) / f'{model_path.stem}.fp16.{file_sha256(model_path)[:16]}.onnx'
        return copy if copy.exists() else fp16_copy(model_path, copy)
    needs = {'int8': 'a QDQ model: make one with `seg_tool quantize MODEL --target tensorrt`',
             'fp16': 'an fp32 or fp16 model', 'fp32': 'the fp32 model'}[precision]
    raise ConfigError(f'{model_path} is an {found} model: precision {precision} needs {needs}, '
                      f'or ask for precision {found}')
