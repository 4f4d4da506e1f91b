"""The class file: parsing, refusals with the reason, ids by name and the colour table."""

import numpy as np
import pytest

from seg_node.core.classes import classes_beside, DEFAULT_CLASSES_PATH, load_classes
from seg_node.core.errors import ConfigError, ModelLoadError


def test_bundled_camvid_classes():
    classes = load_classes()
    assert classes.num_classes == 11 and classes.ignore_index == 11
    assert classes.names[2] == 'pole' and classes.palette[2].tolist() == [192, 192, 128]
    lut = classes.color_lut()
    assert lut.shape == (256, 3) and lut[3].tolist() == [128, 64, 128]
    assert lut[classes.ignore_index].tolist() == [0, 0, 0]


def test_ids_by_name_and_unknown_names_listed_with_the_valid_ones():
    classes = load_classes()
    np.testing.assert_array_equal(classes.ids(('pole', 'bicyclist')), [2, 10])
    with pytest.raises(ConfigError, match=r'unknown class lamp_post; the class file has sky,'):
        classes.ids(['pole', 'lamp_post'])


@pytest.mark.parametrize(('text', 'reason'), [
    ('classes: [{name: a, color: [1, 2, 3]}, {name: a, color: [1, 2, 3]}]', 'unique'),
    ('classes: [{name: a, color: [1, 2, 300]}]', r'\[r, g, b\] in 0..255'),
    ('classes: [{name: a}]', 'malformed'),
    ('ignore_index: 3', 'malformed'),
])
def test_malformed_class_files_are_refused_with_the_reason(tmp_path, text, reason):
    path = tmp_path / 'classes.yaml'
    path.write_text(text)
    with pytest.raises(ModelLoadError, match=reason):
        load_classes(path)


def test_missing_class_file_says_which_parameter_to_fix(tmp_path):
    with pytest.raises(ModelLoadError, match='`classes` parameter'):
        load_classes(tmp_path / 'absent.yaml')


def test_a_model_uses_the_class_file_beside_it_else_the_bundled_one(tmp_path):
    assert classes_beside(tmp_path / 'model.onnx') == DEFAULT_CLASSES_PATH
    (tmp_path / 'classes.yaml').write_text('classes: [{name: a, color: [1, 2, 3]}]\n')
    assert classes_beside(tmp_path / 'model.onnx') == tmp_path / 'classes.yaml'
