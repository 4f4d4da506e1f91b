"""Training recipes: YAML files of ``TrainConfig`` settings (``config/train_*.yaml``).

A recipe names the settings that define a run (architecture, schedule, losses,
augmentation, seed); command-line flags override it, and ``TrainConfig``'s own defaults
fill in the rest. So the command that made a model is one file, not a line of flags.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
import types
import typing
from typing import Any

import yaml

from seg_node.core.classes import DEFAULT_CLASSES_PATH
from seg_node.core.errors import ConfigError


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in every checkpoint).

    The defaults here are the only defaults: ``seg_tool train`` flags and recipe files
    override them.
    """

    data: str
    output: str
    arch: str = 'fast'
    classes: str = str(DEFAULT_CLASSES_PATH)
    epochs: int = 200
    batch_size: int = 8
    crop: int = 288
    scale_min: float = 0.7
    scale_max: float = 1.8
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    bf16: bool = False
    hard_fraction: float = 1.0
    class_weighting: str = 'sqrt-median-frequency'
    jaccard_weight: float = 1.0
    aux_weight: float = 0.4
    paste_classes: tuple[str, ...] = ()
    paste_probability: float = 0.0
    paste_scale_max: float = 1.0
    teachers: tuple[str, ...] = ()
    distill_weight: float = 0.0
    distill_temperature: float = 1.0
    distill_class_weighted: bool = False
    init_from: str | None = None
    schedule: str = 'one-cycle'
    average_from: int = 0
    device: str = 'auto'
    eval_every: int = 5
    threads: int = 0
    image_scale: float = 1.0
    train_limit: int | None = None
    val_limit: int | None = None


# Learning-rate schedules (TrainConfig.schedule), stepped once per batch.
SCHEDULES = ('one-cycle', 'constant')

# Where a run's data and results live is the caller's business, not the recipe's.
NOT_IN_RECIPES = frozenset({'data', 'output'})


# Each TrainConfig field's type, the one every recipe value and override is checked against.
_FIELD_TYPES: dict[str, Any] = typing.get_type_hints(TrainConfig)


def _coerce(name: str, value: Any, expected: Any) -> Any:
    """Return ``value`` as the field's type, or raise ConfigError naming the field."""
    options = typing.get_args(expected) if isinstance(expected, types.UnionType) else ()
    if options:
        if value is None and type(None) in options:
            return None
        expected = next(option for option in options if option is not type(None))
    if typing.get_origin(expected) is tuple:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ConfigError(f'recipe setting {name!r} must be a list, got {value!r}')
        return tuple(str(item) for item in value)
    if expected is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, expected) and not (expected is int and isinstance(value, bool)):
        return value
    raise ConfigError(f'recipe setting {name!r} must be {expected.__name__}, got {value!r}')


def load_recipe(path: str | Path) -> dict[str, Any]:
    """Read a recipe file.

    Args:
        path: YAML mapping of ``TrainConfig`` field names to values.

    Returns:
        The settings, each converted to its field's type.

    Raises:
        ConfigError: unreadable file, unknown or misplaced key, or a value of the wrong type.

    """
    try:
        recipe = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f'cannot read training recipe {path}: {err}') from err
    if not isinstance(recipe, dict):
        raise ConfigError(f'training recipe {path} must be a mapping of setting: value')
    allowed = sorted(set(_FIELD_TYPES) - NOT_IN_RECIPES)
    for name in recipe:
        if name not in allowed:
            raise ConfigError(f'training recipe {path}: unknown setting {name!r}; valid: '
                              f'{", ".join(allowed)}')
    return {name: _coerce(name, value, _FIELD_TYPES[name]) for name, value in recipe.items()}


def make_train_config(data: str | Path, output: str | Path,
                      recipes: Sequence[str | Path] = (), **overrides: Any) -> TrainConfig:
    """Build a run's settings: ``TrainConfig`` defaults < recipe files < ``overrides``.

    Args:
        data: CamVid-format data folder.
        output: run folder.
        recipes: recipe files (see ``load_recipe``), each overriding the ones before it, e.g.
            a network's recipe and then a recipe that continues it.
        **overrides: ``TrainConfig`` fields given explicitly (e.g. on the command line).

    Returns:
        The complete configuration.

    Raises:
        ConfigError: a bad recipe, or an override that is not a ``TrainConfig`` field.

    """
    settings = {}
    for recipe in recipes:
        settings.update(load_recipe(recipe))
    for name, value in overrides.items():
        if name not in _FIELD_TYPES or name in NOT_IN_RECIPES:
            raise ConfigError(f'unknown training setting {name!r}')
        settings[name] = _coerce(name, value, _FIELD_TYPES[name])
    return TrainConfig(data=str(data), output=str(output), **settings)
