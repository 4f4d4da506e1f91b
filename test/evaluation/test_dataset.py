"""CamVid-format loading, rescaling and class weights."""

import numpy as np
import pytest

from conftest import CAMVID_FIXTURES
from seg_node.core.classes import load_classes
from seg_node.evaluation.dataset import class_weights, load_split
from seg_node.core.errors import ConfigError

CLASSES = load_classes()


def test_split_loads_in_file_order_and_rescales_labels_without_blending():
    full = load_split(CAMVID_FIXTURES, 'val')
    half = load_split(CAMVID_FIXTURES, 'val', limit=2, scale=0.5)
    assert full.names[:2] == half.names and len(full.names) == 3
    assert full.images[0].shape == (360, 480, 3) and half.images[0].shape == (180, 240, 3)
    assert set(np.unique(half.labels[0])) <= set(np.unique(full.labels[0]))


def test_class_weights_by_hand():
    labels = [np.array([[0, 0, 0, 0, 0, 0, 1, 1, 2, 11]], np.uint8)]
    frequency = np.array([6, 2, 1]) / 9  # classes 3..10 absent, void not counted
    median = np.median(frequency)
    weights = class_weights(labels, CLASSES)
    np.testing.assert_allclose(weights[:3], median / frequency, rtol=1e-6)
    assert (weights[3:] == 0).all()
    np.testing.assert_allclose(class_weights(labels, CLASSES, 'sqrt-median-frequency')[:3],
                               np.sqrt(median / frequency), rtol=1e-6)
    np.testing.assert_array_equal(class_weights(labels, CLASSES, 'none'), [1, 1, 1] + [0] * 8)
    with pytest.raises(ConfigError, match='median-frequency'):
        class_weights(labels, CLASSES, 'inverse')
