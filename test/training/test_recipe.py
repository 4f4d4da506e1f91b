"""Training recipes: the shipped recipe file, precedence (defaults < recipe < flags), errors."""

from dataclasses import asdict
from pathlib import Path

import onnx
import pytest

from seg_node.core.classes import load_classes
from seg_node.tools.cli.main import build_parser, train_config_from_args
from seg_node.core.errors import ConfigError
from seg_node.core.inference.contract import META_ARCH
from seg_node.models import DEFAULT_MODEL_PATH
from seg_node.training.recipe import load_recipe, make_train_config, TrainConfig

SHIPPED_RECIPE = Path(__file__).resolve().parents[2] / 'config' / 'train_camvid.yaml'
AVERAGING_RECIPE = SHIPPED_RECIPE.with_name('average_camvid.yaml')


def test_shipped_recipe_is_the_shipped_models_recipe():
    recipe = load_recipe(SHIPPED_RECIPE)
    metadata = {entry.key: entry.value
                for entry in onnx.load(DEFAULT_MODEL_PATH, load_external_data=False)
                .metadata_props}
    assert recipe['arch'] == metadata[META_ARCH] == 'fast_fine'
    assert set(recipe['paste_classes']) <= set(load_classes().names)
    assert recipe['paste_classes'] == ('pole', 'sign_symbol', 'pedestrian', 'bicyclist')
    assert (recipe['seed'], recipe['epochs'], recipe['paste_probability']) == (3, 200, 0.5)


def test_averaging_recipe_continues_the_shipped_recipes_run():
    first = load_recipe(SHIPPED_RECIPE)
    config = make_train_config('data', 'out', [SHIPPED_RECIPE, AVERAGING_RECIPE])
    assert config.arch == first['arch'] and config.seed == first['seed']
    assert config.paste_classes == first['paste_classes']
    assert (config.schedule, config.lr, config.epochs, config.average_from) == (
        'constant', 0.0005, 120, 1)
    assert config.init_from == 'runs/fast_fine_s3/last.pt'
    assert (config.scale_min, config.scale_max) == (0.56, 1.44)
    assert (first['scale_min'], first['scale_max']) == (0.7, 1.8)


def test_defaults_then_recipe_then_overrides(tmp_path: Path):
    recipe = tmp_path / 'recipe.yaml'
    recipe.write_text('arch: fast_wide\nepochs: 50\njaccard_weight: 2\nbf16: true\n')
    config = make_train_config('data', 'out', [recipe], epochs=7)
    assert (config.arch, config.epochs, config.jaccard_weight, config.bf16) == (
        'fast_wide', 7, 2.0, True)
    assert isinstance(config.jaccard_weight, float)
    assert config.crop == TrainConfig('d', 'o').crop
    assert (config.data, config.output) == ('data', 'out')
    assert make_train_config('data', 'out') == TrainConfig('data', 'out')


def test_a_later_recipe_overrides_an_earlier_one_and_flags_override_both(tmp_path: Path):
    first, second = tmp_path / 'first.yaml', tmp_path / 'second.yaml'
    first.write_text('arch: fast_wide\nepochs: 200\nlr: 0.003\njaccard_weight: 2\n')
    second.write_text('epochs: 40\nlr: 0.0005\nschedule: constant\n')
    args = build_parser().parse_args(
        ['train', '--output', str(tmp_path / 'run'), '--recipe', str(first), '--recipe',
         str(second), '--lr', '0.001'])
    config = train_config_from_args(args)
    assert (config.arch, config.jaccard_weight, config.epochs, config.schedule, config.lr) == (
        'fast_wide', 2.0, 40, 'constant', 0.001)


def test_command_line_flags_override_the_recipe(tmp_path: Path):
    recipe = tmp_path / 'recipe.yaml'
    recipe.write_text('arch: fast_wide\nseed: 2\nbf16: true\npaste_classes: [pole]\n'
                      'paste_probability: 0.5\n')
    args = build_parser().parse_args(
        ['train', '--output', str(tmp_path / 'run'), '--recipe', str(recipe), '--seed', '3',
         '--no-bf16', '--scale', '0.5', '2.0', '--paste-classes', 'pole', 'sign_symbol'])
    config = train_config_from_args(args)
    assert (config.arch, config.seed, config.bf16) == ('fast_wide', 3, False)
    assert (config.scale_min, config.scale_max) == (0.5, 2.0)
    assert config.paste_classes == ('pole', 'sign_symbol')
    assert config.paste_probability == 0.5
    assert config.output == str(tmp_path / 'run')


def test_flags_alone_keep_the_defaults(tmp_path: Path):
    args = build_parser().parse_args(['train', '--output', str(tmp_path)])
    assert asdict(train_config_from_args(args)) == asdict(
        TrainConfig(data=str(args.data), output=str(tmp_path)))


@pytest.mark.parametrize(('text', 'message'), [
    ('epochs: 10\nepoch_count: 3\n', "unknown setting 'epoch_count'; valid: arch, "),
    ('output: runs/x\n', "unknown setting 'output'"),
    ('epochs: ten\n', "'epochs' must be int, got 'ten'"),
    ('bf16: 1\n', "'bf16' must be bool"),
    ('epochs: true\n', "'epochs' must be int"),
    ('paste_classes: pole\n', "'paste_classes' must be a list"),
    ('- arch\n', 'must be a mapping'),
    ('arch: [unclosed\n', 'cannot read training recipe'),
])
def test_bad_recipes_are_refused_with_the_setting_named(tmp_path: Path, text: str,
                                                        message: str):
    recipe = tmp_path / 'recipe.yaml'
    recipe.write_text(text)
    with pytest.raises(ConfigError, match=message.replace('[', r'\[')):
        load_recipe(recipe)


def test_missing_recipe_and_unknown_override_are_refused(tmp_path: Path):
    with pytest.raises(ConfigError, match='cannot read training recipe'):
        load_recipe(tmp_path / 'absent.yaml')
    with pytest.raises(ConfigError, match="unknown training setting 'epoch_count'"):
        make_train_config('data', 'out', epoch_count=3)


def test_optional_settings_accept_null_and_lists(tmp_path: Path):
    recipe = tmp_path / 'recipe.yaml'
    recipe.write_text('init_from: null\ntrain_limit: 4\nteachers: [a.pt, b.pt]\n')
    assert load_recipe(recipe) == {'init_from': None, 'train_limit': 4,
                                   'teachers': ('a.pt', 'b.pt')}


def test_weight_averaging_flags_become_settings(tmp_path: Path):
    args = build_parser().parse_args(
        ['train', '--output', str(tmp_path), '--init-from', str(tmp_path / 'last.pt'),
         '--schedule', 'constant', '--average-from', '5'])
    config = train_config_from_args(args)
    assert (config.init_from, config.schedule, config.average_from) == (
        str(tmp_path / 'last.pt'), 'constant', 5)
    with pytest.raises(SystemExit):
        build_parser().parse_args(['train', '--output', 'o', '--schedule', 'cosine'])


def test_distillation_flags_become_settings(tmp_path: Path):
    args = build_parser().parse_args(
        ['train', '--output', str(tmp_path), '--teachers', 'a/averaged.pt', 'b/averaged.pt',
         '--distill-weight', '1', '--distill-class-weighted'])
    config = train_config_from_args(args)
    assert (config.teachers, config.distill_weight, config.distill_class_weighted) == (
        ('a/averaged.pt', 'b/averaged.pt'), 1.0, True)
    unweighted = train_config_from_args(build_parser().parse_args(
        ['train', '--output', str(tmp_path), '--no-distill-class-weighted']))
    assert unweighted.distill_class_weighted is False
