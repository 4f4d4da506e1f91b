"""Pruning serialised ONNX models without the onnx package (checked against onnx's own)."""

import numpy as np
import onnx
import onnx.utils
import onnxruntime as ort
import pytest
from onnx import helper, TensorProto

from seg_node.core.inference.onnx_graph import parse_fields, prune_outputs
from seg_node.models import DEFAULT_MODEL_PATH


def test_pruning_the_shipped_model_matches_onnx_extractor():
    data = DEFAULT_MODEL_PATH.read_bytes()
    full = onnx.load_from_string(data)
    reference = onnx.utils.Extractor(full).extract_model(
        [arg.name for arg in full.graph.input], ['labels', 'confidence'])
    pruned = onnx.load_from_string(prune_outputs(data, ['labels', 'confidence']))
    onnx.checker.check_model(pruned)
    assert [o.name for o in pruned.graph.output] == ['labels', 'confidence']
    assert len(pruned.graph.node) == len(reference.graph.node) < len(full.graph.node)
    assert [list(n.output) for n in pruned.graph.node] == \
        [list(n.output) for n in reference.graph.node]
    assert sorted(t.name for t in pruned.graph.initializer) == \
        sorted(t.name for t in reference.graph.initializer)
    assert pruned.metadata_props == full.metadata_props
    assert pruned.opset_import == full.opset_import
    assert pruned.ir_version == full.ir_version


def _if_model() -> bytes:
    """Return a model: y = x + 1; z = If(c, then y * 2, else y * 3); w = x - 1.

    The If branches read ``y`` from the outer scope without listing it as an input.
    """
    def branch(name: str, factor: float) -> onnx.GraphProto:
        return helper.make_graph(
            [helper.make_node('Mul', ['y', f'{name}_k'], [f'{name}_out'])], name, [],
            [helper.make_tensor_value_info(f'{name}_out', TensorProto.FLOAT, [2])],
            [helper.make_tensor(f'{name}_k', TensorProto.FLOAT, [], [factor])])
    nodes = [helper.make_node('Add', ['x', 'one'], ['y']),
             helper.make_node('Sub', ['x', 'one'], ['w']),
             helper.make_node('If', ['c'], ['z'], then_branch=branch('then', 2.0),
                              else_branch=branch('else', 3.0))]
    graph = helper.make_graph(
        nodes, 'g',
        [helper.make_tensor_value_info('x', TensorProto.FLOAT, [2]),
         helper.make_tensor_value_info('c', TensorProto.BOOL, [])],
        [helper.make_tensor_value_info('z', TensorProto.FLOAT, [2]),
         helper.make_tensor_value_info('w', TensorProto.FLOAT, [2])],
        [helper.make_tensor('one', TensorProto.FLOAT, [], [1.0])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    return model.SerializeToString()


def test_producers_read_only_inside_a_subgraph_are_kept():
    pruned = prune_outputs(_if_model(), ['z'])
    model = onnx.load_from_string(pruned)
    assert [n.op_type for n in model.graph.node] == ['Add', 'If']
    assert [o.name for o in model.graph.output] == ['z']
    session = ort.InferenceSession(pruned, providers=['CPUExecutionProvider'])
    x = np.array([1.0, 2.0], np.float32)
    (z,) = session.run(None, {'x': x, 'c': np.array(False)})
    np.testing.assert_array_equal(z, (x + 1) * 3)


def test_unused_initializers_go_with_their_readers():
    model = onnx.load_from_string(prune_outputs(_if_model(), ['w']))
    assert [n.op_type for n in model.graph.node] == ['Sub']
    assert [t.name for t in model.graph.initializer] == ['one']
    assert onnx.load_from_string(prune_outputs(_if_model(), ['z', 'w'])).graph.node[1].op_type \
        == 'Sub'


def test_missing_outputs_and_malformed_bytes_are_refused():
    with pytest.raises(ValueError, match='no output probabilities'):
        prune_outputs(_if_model(), ['z', 'probabilities'])
    with pytest.raises(ValueError, match='truncated'):
        prune_outputs(_if_model()[:-3], ['z'])
    with pytest.raises(ValueError, match='not an ONNX model'):
        prune_outputs(b'\x08\x07', ['z'])


def test_fields_split_every_wire_type():
    # field 1 varint 300, field 2 64-bit, field 3 bytes "ab", field 4 32-bit
    data = b'\x08\xac\x02' + b'\x11' + bytes(8) + b'\x1a\x02ab' + b'\x25' + bytes(4)
    fields = parse_fields(data)
    assert [f.number for f in fields] == [1, 2, 3, 4]
    assert b''.join(f.raw for f in fields) == data
    assert fields[2].payload == b'ab'
