"""Prune a serialised ONNX model to some of its outputs, without the ``onnx`` package.

The ONNX Runtime backend opens a second session on the graph reduced to ``labels`` and
``confidence``. Pruning reads the protobuf wire format directly, so the node needs
neither the ``onnx`` package (no rosdep key exists for it) nor its compiled schema. Only the
fields that pruning looks at are decoded: graph nodes (their input and output names and
subgraph attributes), outputs, value infos and initializers (their names). Every other
byte, including the model's metadata, opset imports and IR version, is copied unchanged.
"""

from collections.abc import Iterable
from dataclasses import dataclass

# Field numbers of onnx.proto (ModelProto, GraphProto, NodeProto, AttributeProto,
# ValueInfoProto, TensorProto).
MODEL_GRAPH = 7
GRAPH_NODE = 1
GRAPH_INITIALIZER = 5
GRAPH_OUTPUT = 12
GRAPH_VALUE_INFO = 13
NODE_INPUT = 1
NODE_OUTPUT = 2
NODE_ATTRIBUTE = 5
ATTRIBUTE_GRAPH = 6
ATTRIBUTE_GRAPHS = 11
VALUE_INFO_NAME = 1
TENSOR_NAME = 8

# Protobuf wire types: varint, 64-bit, length-delimited, 32-bit.
VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5
FIXED_SIZES = {FIXED64: 8, FIXED32: 4}


@dataclass(frozen=True)
class Field:
    """One encoded protobuf field.

    Attributes:
        number: the field number.
        raw: the whole field as encoded (key, length and payload), to copy unchanged.
        payload: the bytes of a length-delimited field, else empty.

    """

    number: int
    raw: bytes
    payload: bytes


def _read_varint(data: bytes, position: int) -> tuple[int, int]:
    """Return (value, position after it) of the varint at ``position``."""
    value = shift = 0
    while True:
        if position >= len(data):
            raise ValueError('truncated varint')
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def parse_fields(data: bytes) -> list[Field]:
    """Split an encoded message into its fields, in order.

    Raises:
        ValueError: ``data`` is not a well-formed protobuf message.

    """
    fields = []
    position = 0
    while position < len(data):
        start = position
        key, position = _read_varint(data, position)
        number, wire_type = key >> 3, key & 7
        payload = b''
        if wire_type == VARINT:
            _, position = _read_varint(data, position)
        elif wire_type == LENGTH_DELIMITED:
            length, position = _read_varint(data, position)
            payload = data[position:position + length]
            position += length
        elif wire_type in FIXED_SIZES:
            position += FIXED_SIZES[wire_type]
        else:
            raise ValueError(f'unsupported protobuf wire type {wire_type}')
        if position > len(data) or number == 0:
            raise ValueError('truncated or malformed protobuf field')
        fields.append(Field(number, data[start:position], payload))
    return fields


def _strings(fields: Iterable[Field], number: int) -> list[str]:
    return [field.payload.decode() for field in fields if field.number == number]


def _name(message: bytes, number: int) -> str:
    names = _strings(parse_fields(message), number)
    return names[0] if names else ''


def _subgraph_inputs(node_fields: list[Field]) -> set[str]:
    """Return every tensor name read inside a node's subgraphs (If, Loop, Scan bodies).

    A superset of the outer-scope names the subgraphs use: enough to keep their producers.
    """
    names: set[str] = set()
    for attribute in (f for f in node_fields if f.number == NODE_ATTRIBUTE):
        for graph in parse_fields(attribute.payload):
            if graph.number in (ATTRIBUTE_GRAPH, ATTRIBUTE_GRAPHS):
                for node in parse_fields(graph.payload):
                    if node.number == GRAPH_NODE:
                        inner = parse_fields(node.payload)
                        names.update(_strings(inner, NODE_INPUT))
                        names |= _subgraph_inputs(inner)
    return names


def prune_outputs(model: bytes, outputs: list[str]) -> bytes:
    """Return ``model`` (a serialised ModelProto) reduced to the nodes ``outputs`` need.

    Graph outputs not in ``outputs``, nodes that do not feed them and the initializers and
    value infos of dropped tensors are removed; everything else is kept byte for byte.

    Raises:
        ValueError: ``model`` is not a serialised ONNX model, or lacks one of ``outputs``.

    """
    model_fields = parse_fields(model)
    graphs = [field for field in model_fields if field.number == MODEL_GRAPH]
    if len(graphs) != 1:
        raise ValueError('not an ONNX model (no graph)')
    graph_fields = parse_fields(graphs[0].payload)
    declared = {_name(field.payload, VALUE_INFO_NAME)
                for field in graph_fields if field.number == GRAPH_OUTPUT}
    missing = [name for name in outputs if name not in declared]
    if missing:
        raise ValueError(f'the graph has no output {", ".join(missing)}')
    needed = set(outputs)
    kept_nodes = set()
    nodes = [index for index, field in enumerate(graph_fields) if field.number == GRAPH_NODE]
    for index in reversed(nodes):  # ONNX requires nodes in topological order
        node_fields = parse_fields(graph_fields[index].payload)
        if needed.intersection(_strings(node_fields, NODE_OUTPUT)):
            kept_nodes.add(index)
            needed.update(_strings(node_fields, NODE_INPUT))
            needed |= _subgraph_inputs(node_fields)
    kept_names = {GRAPH_OUTPUT: set(outputs), GRAPH_VALUE_INFO: needed}
    graph = bytearray()
    for index, field in enumerate(graph_fields):
        if field.number == GRAPH_NODE:
            keep = index in kept_nodes
        elif field.number in kept_names:
            keep = _name(field.payload, VALUE_INFO_NAME) in kept_names[field.number]
        elif field.number == GRAPH_INITIALIZER:
            keep = _name(field.payload, TENSOR_NAME) in needed
        else:
            keep = True
        if keep:
            graph += field.raw
    pruned = bytearray()
    for field in model_fields:
        if field.number == MODEL_GRAPH:
            pruned += _varint(MODEL_GRAPH << 3 | LENGTH_DELIMITED) + _varint(len(graph)) + graph
        else:
            pruned += field.raw
    return bytes(pruned)
