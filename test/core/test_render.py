"""RViz images: the palette image of a label map and its blend over the camera frame."""

import numpy as np
import pytest

from seg_node.core.classes import load_classes
from seg_node.core.render import Renderer


@pytest.fixture
def renderer() -> Renderer:
    return Renderer(load_classes(), alpha=0.25)


def test_palette_image_gives_each_pixel_its_class_colour_and_void_black(renderer,
                                                                        camvid_pairs):
    _, labels = camvid_pairs[0]
    classes = load_classes()
    color = renderer.colorize(labels)
    assert color.shape == (*labels.shape, 3) and color.dtype == np.uint8
    for class_id in np.unique(labels):
        expected = (classes.palette[class_id].tolist() if class_id < classes.num_classes
                    else [0, 0, 0])
        assert np.unique(color[labels == class_id], axis=0).tolist() == [expected]
    assert (labels == classes.ignore_index).any()


def test_rendering_into_given_buffers_allocates_nothing(renderer, camvid_pairs):
    rgb, labels = camvid_pairs[0]
    color_out, overlay_out = np.empty_like(rgb), np.empty_like(rgb)
    assert renderer.colorize(labels, out=color_out) is color_out
    assert renderer.overlay(rgb, color_out, out=overlay_out) is overlay_out
    np.testing.assert_array_equal(color_out, renderer.colorize(labels))


@pytest.mark.parametrize('alpha', [0.0, 0.25, 1.0])
def test_overlay_weights_the_palette_by_alpha(camvid_pairs, alpha):
    rgb, labels = camvid_pairs[0]
    renderer = Renderer(load_classes(), alpha)
    color = renderer.colorize(labels)
    blend = renderer.overlay(rgb, color)
    expected = (1 - alpha) * rgb.astype(float) + alpha * color.astype(float)
    assert np.abs(blend.astype(float) - expected).max() <= 0.5 + 1e-6
