"""ONNX Runtime backend: the pruned session for frames that need no probabilities."""

import numpy as np
import onnx
import pytest

from seg_node.core.errors import ConfigError, ModelLoadError
from seg_node.core.inference.base import create_backend
from seg_node.core.inference.onnxruntime import OnnxRuntimeBackend, pruned_model


def test_pruned_graph_drops_the_probability_crop_and_keeps_metadata(tiny_model):
    full = onnx.load(str(tiny_model))
    pruned = onnx.load_from_string(pruned_model(tiny_model, ['labels', 'confidence']))
    assert [o.name for o in pruned.graph.output] == ['labels', 'confidence']
    assert len(pruned.graph.node) < len(full.graph.node)
    slices = [n for n in full.graph.node if n.op_type == 'Slice']
    pruned_slices = [n for n in pruned.graph.node if n.op_type == 'Slice']
    assert len(pruned_slices) == len(slices) - 2
    assert {p.key: p.value for p in pruned.metadata_props} == \
        {p.key: p.value for p in full.metadata_props}


def test_frames_with_and_without_probabilities_give_the_same_labels(tiny_model, camvid_rgb):
    backend = OnnxRuntimeBackend(tiny_model, num_threads=1)
    lean = backend.infer(camvid_rgb, confidence=True)
    lean_labels, lean_confidence = lean.labels.copy(), lean.confidence.copy()
    full = backend.infer(camvid_rgb, confidence=True, probabilities=True)
    assert lean.probabilities is None and full.probabilities is not None
    np.testing.assert_array_equal(full.labels, lean_labels)
    np.testing.assert_array_equal(full.confidence, lean_confidence)
    np.testing.assert_array_equal(full.probabilities.argmax(axis=0), lean_labels)


def test_a_model_without_the_output_is_refused_with_the_remedy(tiny_model, tmp_path):
    model = onnx.load(str(tiny_model))
    kept = [o for o in model.graph.output if o.name != 'confidence']
    del model.graph.output[:]
    model.graph.output.extend(kept)
    path = tmp_path / 'no_confidence.onnx'
    onnx.save(model, str(path))
    with pytest.raises(ModelLoadError, match='re-export'):
        pruned_model(path, ['labels', 'confidence'])


def test_factory_hands_each_backend_its_own_options(tiny_model):
    spinning = 'session.intra_op.allow_spinning'
    default = create_backend('onnxruntime', tiny_model, 1)
    quiet = create_backend('onnxruntime', tiny_model, 1,
                           {'onnxruntime': {'allow_spinning': False},
                            'tensorrt': {'precision': 'fp16'}})
    assert default.session.get_session_options().get_session_config_entry(spinning) == '1'
    assert quiet.session.get_session_options().get_session_config_entry(spinning) == '0'
    assert create_backend('auto', tiny_model, 1, {'onnxruntime': {'allow_spinning': False}}) \
        .session.get_session_options().get_session_config_entry(spinning) == '0'


def test_factory_names_the_valid_options_of_a_backend(tiny_model):
    with pytest.raises(ConfigError, match='no option precision; valid options: allow_spinning'):
        create_backend('onnxruntime', tiny_model, options={'onnxruntime': {'precision': 'fp16'}})
