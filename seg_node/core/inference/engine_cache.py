"""TensorRT engines in a cache folder, keyed by everything that makes one valid.

A serialized engine only runs correctly with the TensorRT library (``tensorrt`` or
``tensorrt_rtx``) and version and the GPU (name, compute capability) it was built for, and only
means the model file it was built from (whose types carry the precision) and the optimisation
profile asked for. All of that is the :class:`EngineKey`. An engine is written as
``<model stem>.<precision>.<key digest>.engine`` in the engine folder (the node's
``engine_cache_dir``; :func:`default_engine_dir` when unset, never the install tree beside a
bundled model), with a sidecar ``<engine>.json`` holding the key fields, the engine's own
sha256 and the model's metadata.

A lookup hands out an engine only if its sidecar matches the key field for field and the engine
bytes match their recorded hash; anything else raises :class:`~seg_node.core.errors.ModelLoadError`
naming the fields that differ, so a stale or foreign engine is never loaded silently.

Pure Python: the key's inputs are plain values, so this module is tested without a GPU.
"""

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from seg_node.core.errors import ConfigError, ModelLoadError

PRECISIONS = ('fp32', 'fp16', 'int8')
ENVIRONMENT_FIELDS = ('tensorrt_module', 'tensorrt_version', 'device_name',
                      'compute_capability')
KEY_FIELDS = ('onnx_sha256', *ENVIRONMENT_FIELDS, 'precision', 'profile')
ENGINE_SUFFIX = '.engine'

Shape = tuple[int, int, int]


def default_engine_dir() -> Path:
    """Return where engines go when no folder is given.

    ``$ROS_HOME/seg_node/engines`` if ``ROS_HOME`` is set, else
    ``$XDG_CACHE_HOME/seg_node/engines`` if ``XDG_CACHE_HOME`` is set, else
    ``~/.ros/seg_node/engines`` (ROS's own default home).
    """
    for variable in ('ROS_HOME', 'XDG_CACHE_HOME'):
        if os.environ.get(variable):
            return Path(os.environ[variable]).expanduser() / 'seg_node' / 'engines'
    return Path.home() / '.ros' / 'seg_node' / 'engines'


def parse_shape(text: str) -> Shape:
    """Parse ``"HxW"`` or ``"NxHxW"`` into (N, H, W); N defaults to 1.

    Raises:
        ConfigError: not two or three positive integers separated by ``x``.
    """
    try:
        values = tuple(int(value) for value in text.lower().split('x'))
    except ValueError:
        values = ()
    if len(values) not in (2, 3) or min(values) < 1:
        raise ConfigError(f'shape {text!r} is invalid; write HxW or NxHxW, e.g. 360x480')
    return values if len(values) == 3 else (1, *values)


def format_shape(shape: Shape) -> str:
    """Return (N, H, W) as ``"NxHxW"``."""
    return 'x'.join(str(value) for value in shape)


@dataclass(frozen=True)
class Profile:
    """An optimisation profile of the ``image`` input: (N, H, W) at min, opt and max.

    Raises:
        ConfigError: N is not 1 (the backend runs one frame at a time) or min <= opt <= max
            does not hold in every dimension.
    """

    min: Shape
    opt: Shape
    max: Shape

    def __post_init__(self) -> None:
        """Validate the three shapes."""
        shapes = (self.min, self.opt, self.max)
        if any(shape[0] != 1 for shape in shapes):
            raise ConfigError('the profile batch size N must be 1: the backend segments one '
                              'frame at a time')
        if not all(low <= mid <= high for low, mid, high in zip(*shapes, strict=True)):
            raise ConfigError(f'profile min {format_shape(self.min)}, opt '
                              f'{format_shape(self.opt)}, max {format_shape(self.max)} must '
                              'satisfy min <= opt <= max in every dimension')

    def contains(self, shape: Shape) -> bool:
        """Return whether (N, H, W) ``shape`` lies within min..max."""
        return all(low <= value <= high
                   for low, value, high in zip(self.min, shape, self.max, strict=True))

    def describe(self) -> str:
        """Return ``"min NxHxW opt NxHxW max NxHxW"``."""
        return (f'min {format_shape(self.min)} opt {format_shape(self.opt)} '
                f'max {format_shape(self.max)}')

    def to_json(self) -> dict[str, list[int]]:
        """Return ``{"min": [N, H, W], "opt": [...], "max": [...]}``."""
        return {'min': list(self.min), 'opt': list(self.opt), 'max': list(self.max)}


def profile_from_shapes(min_shape: str | None, opt_shape: str | None, max_shape: str | None,
                        default_size: tuple[int, int]) -> Profile:
    """Build a profile from ``HxW``/``NxHxW`` texts; opt defaults to ``default_size``.

    Args:
        min_shape: smallest input, or None for opt.
        opt_shape: the shape TensorRT tunes for, or None for (1, *default_size).
        max_shape: largest input, or None for opt.
        default_size: (H, W) used when ``opt_shape`` is None.

    Raises:
        ConfigError: a malformed shape or an invalid profile.
    """
    opt = parse_shape(opt_shape) if opt_shape else (1, *default_size)
    return Profile(parse_shape(min_shape) if min_shape else opt, opt,
                   parse_shape(max_shape) if max_shape else opt)


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on.

    Attributes:
        onnx_sha256: hex sha256 of the ONNX file's bytes.
        tensorrt_module: the builder's Python module, ``tensorrt`` or ``tensorrt_rtx``.
        tensorrt_version: that module's ``__version__``.
        device_name: the GPU's name, e.g. ``"NVIDIA H100 80GB HBM3"`` (``"any"`` for a
            portable TensorRT-RTX engine).
        compute_capability: ``"major.minor"``, e.g. ``"9.0"`` (or the portable targets).
        precision: one of :data:`PRECISIONS`.
        profile: the input's optimisation profile.
    """

    onnx_sha256: str
    tensorrt_module: str
    tensorrt_version: str
    device_name: str
    compute_capability: str
    precision: str
    profile: Profile

    def __post_init__(self) -> None:
        """Validate the precision."""
        if self.precision not in PRECISIONS:
            raise ConfigError(f'precision {self.precision!r} is invalid; choose one of '
                              + ', '.join(PRECISIONS))

    def fields(self) -> dict[str, object]:
        """Return the key as JSON-ready values, in :data:`KEY_FIELDS` order."""
        return {'onnx_sha256': self.onnx_sha256, 'tensorrt_module': self.tensorrt_module,
                'tensorrt_version': self.tensorrt_version,
                'device_name': self.device_name,
                'compute_capability': self.compute_capability, 'precision': self.precision,
                'profile': self.profile.to_json()}

    def digest(self) -> str:
        """Return the hex sha256 of the canonical JSON of :meth:`fields`."""
        text = json.dumps(self.fields(), sort_keys=True, separators=(',', ':'))
        return hashlib.sha256(text.encode()).hexdigest()


def file_sha256(path: Path) -> str:
    """Return the hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open('rb') as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def engine_path(engine_dir: Path, model_path: Path, key: EngineKey) -> Path:
    """Return where the engine of ``key`` for ``model_path`` lives in ``engine_dir``."""
    return (Path(engine_dir)
            / f'{Path(model_path).stem}.{key.precision}.{key.digest()[:16]}{ENGINE_SUFFIX}')


def sidecar_path(engine: Path) -> Path:
    """Return the sidecar JSON path of an engine file."""
    engine = Path(engine)
    return engine.with_name(engine.name + '.json')


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
    temporary.write_bytes(data)
    temporary.replace(path)


def write_engine(engine_dir: Path, model_path: Path, key: EngineKey, data: bytes,
                 metadata: dict[str, str]) -> Path:
    """Store serialized engine bytes and their sidecar in ``engine_dir`` (made if missing).

    The engine is written first and the sidecar last, each atomically, so an interrupted
    build leaves no engine that a lookup would accept.

    Args:
        engine_dir: the engine folder.
        model_path: the ONNX model the engine was built from.
        key: the key it was built for.
        data: the serialized engine.
        metadata: the model's custom metadata (class names, inference size, arch), kept so an
            engine can be loaded without its ONNX file.

    Returns:
        The engine path.
    """
    path = engine_path(engine_dir, model_path, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, data)
    sidecar = {**key.fields(), 'engine_sha256': hashlib.sha256(data).hexdigest(),
               'onnx_file': Path(model_path).name, 'metadata': dict(metadata)}
    _write_atomically(sidecar_path(path), (json.dumps(sidecar, indent=2) + '\n').encode())
    return path


def read_sidecar(engine: Path) -> dict:
    """Return an engine's sidecar fields.

    Raises:
        ModelLoadError: the sidecar is missing or is not a JSON object.
    """
    path = sidecar_path(engine)
    try:
        sidecar = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise ModelLoadError(f'engine {engine} has no sidecar {path.name}, so what it was '
                             'built for is unknown; rebuild it with `seg_tool build-engine`'
                             ) from err
    except (OSError, ValueError) as err:
        raise ModelLoadError(f'cannot read engine sidecar {path}: {err}; rebuild the engine '
                             'with `seg_tool build-engine`') from err
    if not isinstance(sidecar, dict):
        raise ModelLoadError(f'engine sidecar {path} is not a JSON object; rebuild the engine '
                             'with `seg_tool build-engine`')
    return sidecar


def differences(expected: dict[str, object], recorded: dict,
                names: tuple[str, ...] = KEY_FIELDS) -> list[str]:
    """Describe each field of ``names`` whose recorded value differs from the expected one.

    Returns:
        One ``"field: engine has X, expected Y"`` string per differing field, in ``names``
        order; empty when all match.
    """
    return [f'{name}: engine has {recorded.get(name)!r}, expected {expected[name]!r}'
            for name in names if recorded.get(name) != expected[name]]


def verify_sidecar(engine: Path, expected: dict[str, object],
                   names: tuple[str, ...] = KEY_FIELDS) -> dict:
    """Return an engine's sidecar if it matches ``expected`` on ``names``.

    Args:
        engine: the ``.engine`` file.
        expected: key fields as :meth:`EngineKey.fields` gives them (at least ``names``).
        names: the fields to compare; :data:`ENVIRONMENT_FIELDS` for an engine given directly
            (it only has to suit this machine), all of :data:`KEY_FIELDS` for a cache lookup.

    Raises:
        ModelLoadError: a missing or unreadable sidecar, or a differing field.
    """
    sidecar = read_sidecar(engine)
    mismatched = differences(expected, sidecar, names)
    if mismatched:
        raise ModelLoadError(f'engine {engine} does not match this machine and request ('
                             + '; '.join(mismatched)
                             + '); rebuild it with `seg_tool build-engine`')
    return sidecar


def read_engine(engine: Path, expected: dict[str, object],
                names: tuple[str, ...] = KEY_FIELDS) -> tuple[bytes, dict]:
    """Read an engine after :func:`verify_sidecar` and check its bytes against the sidecar.

    Returns:
        The serialized engine and its sidecar.

    Raises:
        ModelLoadError: what :func:`verify_sidecar` raises, an unreadable engine, or engine
            bytes that are not the ones the sidecar recorded.
    """
    sidecar = verify_sidecar(engine, expected, names)
    try:
        data = Path(engine).read_bytes()
    except OSError as err:
        raise ModelLoadError(f'cannot read engine {engine}: {err}') from err
    if hashlib.sha256(data).hexdigest() != sidecar.get('engine_sha256'):
        raise ModelLoadError(f'engine {engine} is not the file its sidecar describes '
                             '(engine_sha256 differs: truncated or replaced); rebuild it with '
                             '`seg_tool build-engine`')
    return data, sidecar


def find_engine(engine_dir: Path, model_path: Path, key: EngineKey) -> Path | None:
    """Return the engine of ``key`` for ``model_path`` in ``engine_dir``, or None.

    Raises:
        ModelLoadError: an engine is at the key's path but its sidecar does not match.
    """
    path = engine_path(engine_dir, model_path, key)
    if not path.exists():
        return None
    verify_sidecar(path, key.fields())
    return path


def explain_missing(engine_dir: Path, model_path: Path, key: EngineKey) -> str:
    """Say that no engine matches ``key`` and how each engine of the model differs.

    Returns:
        A one-line message naming the request, every other engine in ``engine_dir`` built
        from a file of the model's name with the fields in which it differs, and how to get a
        matching engine.
    """
    model_path = Path(model_path)
    reasons = []
    for candidate in sorted(Path(engine_dir).glob(f'{model_path.stem}.*{ENGINE_SUFFIX}')):
        try:
            sidecar = read_sidecar(candidate)
        except ModelLoadError:
            reasons.append(f'{candidate.name} has no readable sidecar')
            continue
        if sidecar.get('onnx_file') == model_path.name:
            reasons.append(f'{candidate.name} differs in '
                           + ', '.join(differences(key.fields(), sidecar)))
    found = ('; '.join(reasons) if reasons else 'no engine was built for it yet')
    return (f'no TensorRT engine of {model_path} in {engine_dir} matches {key.precision}, '
            f'profile {key.profile.describe()}, {key.tensorrt_module} {key.tensorrt_version} '
            f'on {key.device_name} (compute capability {key.compute_capability}): {found}; '
            f'run `seg_tool build-engine {model_path} --precision {key.precision} '
            f'--engine-dir {engine_dir}` or set build_engine_if_missing: true')
