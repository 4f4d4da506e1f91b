"""The class file: class names, palette and ignore id, read by every part of seg_node."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from seg_node import MODELS_DIR
from seg_node.core.errors import ConfigError, ModelLoadError

DEFAULT_CLASSES_PATH = MODELS_DIR / 'classes.yaml'


@dataclass(frozen=True)
class ClassList:
    """Class names, colours and the id of the ignored ("void") label.

    Attributes:
        names: class names; class id i is ``names[i]``.
        palette: (K, 3) uint8 RGB colour of each class.
        ignore_index: label id that losses and metrics skip (may be >= K).

    """

    names: tuple[str, ...]
    palette: np.ndarray
    ignore_index: int

    @property
    def num_classes(self) -> int:
        """Number of real classes K."""
        return len(self.names)

    def color_lut(self) -> np.ndarray:
        """Return a (256, 3) uint8 lookup table: class id -> RGB, black for other ids."""
        lut = np.zeros((256, 3), np.uint8)
        lut[: self.num_classes] = self.palette
        return lut

    def ids(self, names: tuple[str, ...] | list[str]) -> np.ndarray:
        """Return the (M,) int64 class ids of ``names``.

        Raises:
            ConfigError: a name is not in the class file; the message lists the valid names.
        """
        unknown = [name for name in names if name not in self.names]
        if unknown:
            raise ConfigError(f'unknown class {", ".join(unknown)}; the class file has '
                              f'{", ".join(self.names)}')
        return np.array([self.names.index(name) for name in names], dtype=np.int64)


def classes_beside(model_path: str | Path) -> Path:
    """Return the default class file of a model: ``classes.yaml`` beside it, else the bundled."""
    beside = Path(model_path).parent / 'classes.yaml'
    return beside if beside.exists() else DEFAULT_CLASSES_PATH


def load_classes(path: str | Path = DEFAULT_CLASSES_PATH) -> ClassList:
    """Read a class YAML file (``classes: [{name, color}]``, ``ignore_index``).

    Raises:
        ModelLoadError: the file is missing or malformed.

    """
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text())
        entries = document['classes']
        names = tuple(str(entry['name']) for entry in entries)
        palette = np.array([entry['color'] for entry in entries], dtype=np.int64)
        ignore_index = int(document.get('ignore_index', 255))
    except OSError as err:
        raise ModelLoadError(f'cannot read class file {path}: {err.strerror}; '
                             'pass an existing YAML with the `classes` parameter') from err
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as err:
        raise ModelLoadError(f'class file {path} is malformed ({err!r}); expected '
                             '`classes: [{name: str, color: [r, g, b]}]`') from err
    if not names or len(set(names)) != len(names):
        raise ModelLoadError(f'class file {path} needs unique, non-empty class names')
    if palette.shape != (len(names), 3) or palette.min() < 0 or palette.max() > 255:
        raise ModelLoadError(f'class file {path}: every colour must be [r, g, b] in 0..255')
    if len(names) > 255:
        raise ModelLoadError(f'class file {path}: at most 255 classes fit a mono8 label image')
    return ClassList(names, palette.astype(np.uint8), ignore_index)
