"""TensorRT backend and engine builder: one strongly typed path for TensorRT 10, 11 and RTX.

Which TensorRT runs is chosen at run time: ``tensorrt`` (10.x or 11.x, for data-centre and
Jetson GPUs) if it is installed, else ``tensorrt_rtx`` (TensorRT for RTX 1.x); the
``tensorrt_module`` option (``--tensorrt-module``) forces one. The network is *strongly typed*:
TensorRT keeps the types of the ONNX file, so precision is carried by the file (fp32, its
fp16 copy, or the int8 QDQ model of ``seg_tool quantize --target tensorrt``; see
:func:`~seg_node.models.deploy_graph.model_for_precision`) and no FP16/INT8 builder
flag is used (TensorRT 11 removed them). The module and its version are part of the engine
key.

Building needs no GPU with TensorRT-RTX: its ahead-of-time build runs on the CPU and writes a
portable engine (compute capability 8.0 and later; device ``any``). TensorRT 10/11 builds on
the GPU the engine will run on. Running an engine always needs a GPU: the backend runs a
serialized engine with name-based I/O (``set_input_shape``, ``set_tensor_address``,
``execute_async_v3``) on its own CUDA stream. Device buffers and pinned (page-locked) host
buffers are allocated once per frame size; each frame is one host-to-device copy of the uint8
image, the engine, and device-to-host copies of ``labels`` plus only the other outputs asked
for.

CUDA memory, streams and copies come from cuda-python (``cuda.bindings.runtime``), a thin
binding of the CUDA runtime of a few MB. Torch could allocate the same buffers, but it would
put a multi-GB dependency on the car's runtime path for nothing else. TensorRT and
``cuda-python`` are the optional extra ``tensorrt`` (``pip install 'seg_node[tensorrt]'``) and
are imported only inside functions of this module, so it imports on machines without them,
where :meth:`TensorRTBackend.available` is False and everything else raises
:class:`~seg_node.core.errors.ModelLoadError` with one line saying why.

Engines are found, checked and stored by :mod:`seg_node.core.inference.engine_cache`.
"""

import ctypes
import importlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from seg_node.core.errors import ConfigError, ModelLoadError
from seg_node.core.inference import engine_cache
from seg_node.core.inference.base import (CONFIDENCE, LABELS, OneFrameThroughBatch,
                                          PROBABILITIES, SegResult)
from seg_node.core.inference.contract import check_contract, INPUT_NAME, ModelInfo
from seg_node.core.inference.engine_cache import EngineKey, Profile

DEFAULT_SIZE = (360, 480)
DEFAULT_WORKSPACE_MB = 2048
ONNX_TYPE_NAMES = {np.dtype(np.uint8): 'tensor(uint8)', np.dtype(np.float32): 'tensor(float)'}
# Python modules of TensorRT, in the order tried when none is asked for, and the major
# versions of each that build strongly typed networks through the same API.
TENSORRT_MODULES = ('tensorrt', 'tensorrt_rtx')
SUPPORTED_MAJORS = {'tensorrt': ('10', '11'), 'tensorrt_rtx': ('1',)}
# A TensorRT-RTX engine is built ahead of time for every supported GPU, not for this one.
PORTABLE_ENVIRONMENT = {'device_name': 'any', 'compute_capability': 'portable'}
INSTALL_HINT = ("install the `tensorrt` extra (pip install 'seg_node[tensorrt]') on a machine "
                'with an NVIDIA GPU, or use backend onnxruntime')

Log = Callable[[str], None]


def _stderr_log(message: str) -> None:
    print(f'seg_node tensorrt: {message}', file=sys.stderr, flush=True)


def import_tensorrt(module: str | None = None) -> ModuleType:
    """Return the TensorRT module: ``module`` if given, else the first of TENSORRT_MODULES.

    Raises:
        ConfigError: ``module`` is not one of :data:`TENSORRT_MODULES`.
        ModelLoadError: none is installed, or the installed one's major version is not
            supported.
    """
    if module is not None and module not in TENSORRT_MODULES:
        raise ConfigError(f'unknown TensorRT module {module!r}; choose one of '
                          + ', '.join(TENSORRT_MODULES))
    missing = []
    for name in (module,) if module else TENSORRT_MODULES:
        try:
            trt = importlib.import_module(name)
        except ImportError as err:
            missing.append(str(err))
            continue
        if trt.__version__.split('.')[0] not in SUPPORTED_MAJORS[name]:
            majors = ' or '.join(f'{major}.x' for major in SUPPORTED_MAJORS[name])
            raise ModelLoadError(f'{name} {trt.__version__} is installed, but seg_node builds '
                                 f'with {name} {majors}; install one of those or use backend '
                                 'onnxruntime')
        return trt
    raise ModelLoadError(f'TensorRT is not available here ({"; ".join(missing)}); '
                         + INSTALL_HINT)


def import_cuda() -> ModuleType:
    """Return ``cuda.bindings.runtime`` once a CUDA device is known to be usable.

    Raises:
        ModelLoadError: cuda-python is not installed or no CUDA device is visible.
    """
    try:
        from cuda.bindings import runtime as cudart
    except ImportError as err:
        raise ModelLoadError(f'TensorRT needs cuda-python to run an engine ({err}); '
                             + INSTALL_HINT) from err
    error, count = cudart.cudaGetDeviceCount()
    if error != cudart.cudaError_t.cudaSuccess or count == 0:
        reason = 'no devices' if error == cudart.cudaError_t.cudaSuccess else error.name
        raise ModelLoadError(f'TensorRT is installed but no CUDA device is usable ({reason}); '
                             + INSTALL_HINT)
    return cudart


def import_runtime(module: str | None = None) -> tuple[ModuleType, ModuleType]:
    """Return the TensorRT module and ``cuda.bindings.runtime``: what running an engine needs.

    Raises:
        ConfigError: an unknown ``module``.
        ModelLoadError: what :func:`import_tensorrt` or :func:`import_cuda` raises.
    """
    return import_tensorrt(module), import_cuda()


def _cuda(cudart: object, call: str, *args: object) -> object:
    """Call ``cudart.<call>(*args)`` and return its value, raising on a CUDA error.

    Raises:
        ModelLoadError: the call returned an error code.
    """
    error, *values = getattr(cudart, call)(*args)
    if error != cudart.cudaError_t.cudaSuccess:
        raise ModelLoadError(f'CUDA {call} failed: {error.name}')
    return values[0] if len(values) == 1 else tuple(values)


def _stream_handle(stream: object) -> int:
    """Return a ``cudaStream_t``'s handle as the integer TensorRT takes."""
    try:
        from cuda.bindings.utils import get_cuda_native_handle
    except ImportError:  # cuda-python < 12.9.1, where int() is the documented way
        return int(stream)
    return get_cuda_native_handle(stream)


def environment(trt: ModuleType, cudart: ModuleType | None = None) -> dict[str, str]:
    """Return the engine-key environment fields of building or running with ``trt`` here.

    Args:
        trt: the TensorRT module.
        cudart: ``cuda.bindings.runtime``; None: imported when needed (``tensorrt`` only).

    Returns:
        ``tensorrt_module``, ``tensorrt_version``, and ``device_name`` and
        ``compute_capability`` ("major.minor") of CUDA device 0, or
        :data:`PORTABLE_ENVIRONMENT` for ``tensorrt_rtx``.

    Raises:
        ModelLoadError: ``tensorrt`` without a usable CUDA device.
    """
    fields = {'tensorrt_module': trt.__name__, 'tensorrt_version': trt.__version__}
    if trt.__name__ == 'tensorrt_rtx':
        return fields | PORTABLE_ENVIRONMENT
    properties = _cuda(cudart or import_cuda(), 'cudaGetDeviceProperties', 0)
    name = properties.name
    name = name.decode(errors='replace') if isinstance(name, bytes) else str(name)
    return fields | {'device_name': name.rstrip('\0').strip(),
                     'compute_capability': f'{properties.major}.{properties.minor}'}


def read_onnx(model_path: Path) -> tuple[ModelInfo, dict[str, str]]:
    """Check an ONNX file against the contract and return its info and custom metadata.

    Raises:
        ModelLoadError: not a loadable ONNX model of the contract.
    """
    from seg_node.core.inference.onnxruntime import OnnxRuntimeBackend
    backend = OnnxRuntimeBackend(model_path, num_threads=1)
    return backend.info, dict(backend.session.get_modelmeta().custom_metadata_map)


def profile_for(info: ModelInfo, min_shape: str | None = None, opt_shape: str | None = None,
                max_shape: str | None = None) -> Profile:
    """Return the profile of ``HxW``/``1xHxW`` shapes; opt defaults to the inference size.

    The inference size is the model's metadata, else 360x480 (CamVid's camera); min and max
    default to opt, the fastest engine for the fixed-size frames the node feeds it.
    """
    return engine_cache.profile_from_shapes(min_shape, opt_shape, max_shape,
                                            info.inference_size or DEFAULT_SIZE)


def engine_key(model_file: Path, precision: str, profile: Profile,
               env: dict[str, str]) -> EngineKey:
    """Return the cache key of building ``model_file`` at ``precision`` and ``profile``."""
    return EngineKey(onnx_sha256=engine_cache.file_sha256(model_file), precision=precision,
                     profile=profile, **env)


@dataclass
class EngineRequest:
    """What to build or look up, resolved from a model, a precision and a profile.

    Attributes:
        model_path: the model the caller named (engines are named after it).
        model_file: the file that carries the precision (``model_path`` or its fp16 copy).
        engine_dir: the engine folder.
        key: the engine key of ``model_file`` here.
        metadata: the model's custom metadata.
    """

    model_path: Path
    model_file: Path
    engine_dir: Path
    key: EngineKey
    metadata: dict[str, str]


def engine_request(trt: ModuleType, model_path: Path, precision: str,
                   engine_dir: Path | None = None, profile: Profile | None = None,
                   shapes: tuple[str | None, str | None, str | None] = (None, None, None),
                   cudart: ModuleType | None = None) -> EngineRequest:
    """Resolve the precision's model file (making the fp16 copy if needed) and its key.

    Args:
        trt: the TensorRT module.
        model_path: an ONNX model of the contract.
        precision: fp32, fp16 or int8.
        engine_dir: the engine folder; None: :func:`engine_cache.default_engine_dir`.
        profile: the optimisation profile; None: from ``shapes``.
        shapes: min, opt and max ``HxW`` texts, each None for its default (see
            :func:`profile_for`); used when ``profile`` is None.
        cudart: ``cuda.bindings.runtime`` when already imported.

    Raises:
        ConfigError: a precision the model cannot give, or an invalid profile.
        ModelLoadError: not a model of the contract.
    """
    # The graph tools need the onnx package; only an engine build reads the ONNX graph.
    from seg_node.models.deploy_graph import model_for_precision
    model_path = Path(model_path)
    engine_dir = Path(engine_dir or engine_cache.default_engine_dir())
    model_file = model_for_precision(model_path, precision, engine_dir)
    info, metadata = read_onnx(model_file)
    profile = profile or profile_for(info, *shapes)
    key = engine_key(model_file, precision, profile, environment(trt, cudart))
    return EngineRequest(model_path, model_file, engine_dir, key, metadata)


def default_timing_cache(engine_dir: Path, env: dict[str, str]) -> Path:
    """Return the timing cache file shared by builds in ``engine_dir`` with this TensorRT."""
    target = env['compute_capability'].replace('.', '')
    return (Path(engine_dir) / f'{env["tensorrt_module"]}-{env["tensorrt_version"]}-'
                               f'{target}.timing-cache')


@dataclass
class BuildSummary:
    """What a build produced.

    Attributes:
        engine: the engine file (its sidecar is ``<engine>.json``).
        model_file: the ONNX file built (it carries the precision).
        precision: fp32, fp16 or int8.
        tensorrt: ``"<module> <version>"`` of the builder.
        profile: the input's optimisation profile.
        network_layers: layers TensorRT parsed from the ONNX graph.
        seconds: build wall time.
        engine_bytes: size of the serialized engine.
        timing_cache: the timing cache file read (if present) and updated; None for
            TensorRT-RTX, which has none.
        timing_cache_reused: whether that file existed before the build (None: no cache).
    """

    engine: Path
    model_file: Path
    precision: str
    tensorrt: str
    profile: Profile
    network_layers: int
    seconds: float
    engine_bytes: int
    timing_cache: Path | None
    timing_cache_reused: bool | None

    def describe(self) -> str:
        """Return a one-line human summary."""
        cache = ''
        if self.timing_cache is not None:
            cache = (f'; timing cache {self.timing_cache} '
                     f'({"reused" if self.timing_cache_reused else "created"})')
        return (f'built {self.precision} engine of {self.model_file.name} with '
                f'{self.tensorrt} in {self.seconds:.1f} s: {self.network_layers} network '
                f'layers, {self.engine_bytes / 1e6:.2f} MB, profile {self.profile.describe()}'
                + cache)


def _progress_monitor(trt: ModuleType, log: Log) -> object:
    """Return a ``trt.IProgressMonitor`` that logs top-level build phases and their time."""

    class PhaseLogger(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.started: dict[str, float] = {}

        def phase_start(self, phase_name: str, parent_phase: str | None,
                        num_steps: int) -> None:
            if parent_phase is None:
                self.started[phase_name] = time.perf_counter()
                log(f'{phase_name} ({num_steps} steps)...')

        def step_complete(self, phase_name: str, step: int) -> bool:
            return True

        def phase_finish(self, phase_name: str) -> None:
            start = self.started.pop(phase_name, None)
            if start is not None:
                log(f'{phase_name} done in {time.perf_counter() - start:.1f} s')

    return PhaseLogger()


def _one_line(text: str) -> str:
    return ' '.join(str(text).split())


def build_engine(model_path: Path, precision: str = 'fp16', profile: Profile | None = None,
                 workspace_mb: int = DEFAULT_WORKSPACE_MB, timing_cache: Path | None = None,
                 engine_dir: Path | None = None, tensorrt_module: str | None = None,
                 log: Log = _stderr_log, request: EngineRequest | None = None) -> BuildSummary:
    """Build and cache a TensorRT engine of an ONNX model of the contract.

    The network is strongly typed: the model file carries the precision (the fp32 model, its
    fp16 copy, made here if missing, or the int8 QDQ model). fp32 builds with TF32 off, for
    parity with ONNX Runtime.

    Args:
        model_path: the ONNX file.
        precision: fp32, fp16 or int8 (int8 needs a QDQ model, ``seg_tool quantize``).
        profile: (N, H, W) optimisation profile; None: fixed at the model's inference size.
        workspace_mb: builder workspace memory limit in MiB.
        timing_cache: timing cache file; None: :func:`default_timing_cache` (``tensorrt``
            only).
        engine_dir: the engine folder; None: :func:`engine_cache.default_engine_dir`.
        tensorrt_module: ``tensorrt`` or ``tensorrt_rtx``; None: whichever is installed.
        log: receives progress lines.
        request: an already resolved request (then ``model_path`` .. ``profile`` and
            ``engine_dir`` are not used).

    Raises:
        ModelLoadError: no TensorRT (or, for ``tensorrt``, no GPU), a model outside the
            contract, a parse or build failure.
        ConfigError: an invalid precision or profile, or a precision the model cannot give.
    """
    trt = import_tensorrt(tensorrt_module)
    request = request or engine_request(trt, model_path, precision, engine_dir, profile)
    model_file, key = request.model_file, request.key
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, 'STRONGLY_TYPED', None)
    network = builder.create_network(0 if strongly_typed is None else 1 << int(strongly_typed))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(model_file)):
        errors = '; '.join(_one_line(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelLoadError(f'{key.tensorrt_module} {key.tensorrt_version} cannot parse '
                             f'{model_file}: {errors}')
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if key.precision == 'fp32' and hasattr(trt.BuilderFlag, 'TF32'):
        config.clear_flag(trt.BuilderFlag.TF32)
    optimisation = builder.create_optimization_profile()
    shapes = [(*shape, 3) for shape in (key.profile.min, key.profile.opt, key.profile.max)]
    optimisation.set_shape(INPUT_NAME, *shapes)
    config.add_optimization_profile(optimisation)
    cache = reused = None
    if key.tensorrt_module != 'tensorrt_rtx':  # timing caches are no-ops in TensorRT-RTX
        env = {name: key.fields()[name] for name in engine_cache.ENVIRONMENT_FIELDS}
        timing_cache = Path(timing_cache or default_timing_cache(request.engine_dir, env))
        reused = timing_cache.exists()
        cache = config.create_timing_cache(timing_cache.read_bytes() if reused else b'')
        config.set_timing_cache(cache, ignore_mismatch=False)
    else:
        timing_cache = None
    config.progress_monitor = _progress_monitor(trt, log)
    log(f'building {key.precision} engine of {model_file.name} ({network.num_layers} layers, '
        f'profile {key.profile.describe()}) with {key.tensorrt_module} {key.tensorrt_version} '
        f'for {key.device_name} (compute capability {key.compute_capability})')
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    if serialized is None:
        raise ModelLoadError(f'{key.tensorrt_module} failed to build an engine of {model_file} '
                             '(see its messages above)')
    if cache is not None:
        timing_cache.parent.mkdir(parents=True, exist_ok=True)
        timing_cache.write_bytes(bytes(cache.serialize()))
    data = bytes(serialized)
    path = engine_cache.write_engine(request.engine_dir, request.model_path, key, data,
                                     request.metadata)
    return BuildSummary(path, model_file, key.precision,
                        f'{key.tensorrt_module} {key.tensorrt_version}', key.profile,
                        network.num_layers, seconds, len(data), timing_cache, reused)


class TensorRTBackend(OneFrameThroughBatch):
    """GPU inference of a TensorRT engine with buffers allocated once per frame size."""

    name = 'tensorrt'

    def __init__(self, model_path: Path, num_threads: int = 0, precision: str = 'fp16',
                 build_engine_if_missing: bool = False, profile: Profile | None = None,
                 engine_cache_dir: Path | str | None = None, tensorrt_module: str | None = None,
                 log: Log = _stderr_log) -> None:
        """Find (or build) the engine of ``model_path`` and prepare an execution context.

        Args:
            model_path: an ONNX model (its engine is looked up in the engine folder) or a
                ``.engine`` file (its sidecar must match this machine).
            num_threads: unused (the GPU does the work); accepted for the factory.
            precision: fp32, fp16 or int8: picks the model file that carries it (an fp32
                model's fp16 copy is made in the engine folder; int8 needs a QDQ model).
            build_engine_if_missing: build the engine at start if the cache has none.
            profile: optimisation profile to look up; None: :func:`profile_for` the model.
            engine_cache_dir: the engine folder; None or '':
                :func:`engine_cache.default_engine_dir`.
            tensorrt_module: ``tensorrt`` or ``tensorrt_rtx``; None or '': whichever is
                installed (``tensorrt`` first).
            log: receives progress lines when an engine is built.

        Raises:
            ConfigError: a precision the model cannot give, or an unknown module.
            ModelLoadError: no TensorRT/GPU, no matching engine (naming what differs), or an
                engine that does not deserialize or follow the contract.
        """
        self._stream = None
        self._shape: tuple[int, int, int] | None = None
        self._device: dict[str, int] = {}
        self._pinned: dict[str, int] = {}
        self._host: dict[str, np.ndarray] = {}
        trt, cudart = import_runtime(tensorrt_module or None)
        self._cudart = cudart
        self.model_path = Path(model_path)
        if self.model_path.suffix == engine_cache.ENGINE_SUFFIX:
            engine_file = self.model_path
            data, sidecar = engine_cache.read_engine(engine_file, environment(trt, cudart),
                                                     engine_cache.ENVIRONMENT_FIELDS)
        else:
            request = engine_request(trt, self.model_path, precision,
                                     Path(engine_cache_dir) if engine_cache_dir else None,
                                     profile, cudart=cudart)
            key = request.key
            engine_file = engine_cache.find_engine(request.engine_dir, self.model_path, key)
            if engine_file is None:
                if not build_engine_if_missing:
                    raise ModelLoadError(engine_cache.explain_missing(
                        request.engine_dir, self.model_path, key))
                log(f'no cached engine of {self.model_path.name} for this GPU and request; '
                    'building one now (build_engine_if_missing: true)')
                summary = build_engine(self.model_path, precision, tensorrt_module=trt.__name__,
                                       log=log, request=request)
                log(summary.describe())
                engine_file = summary.engine
            data, sidecar = engine_cache.read_engine(engine_file, key.fields())
        self.engine_path = engine_file
        self.precision = sidecar.get('precision', precision)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(self._logger).deserialize_cuda_engine(data)
        if self.engine is None:
            raise ModelLoadError(f'TensorRT cannot deserialize {engine_file}; rebuild it with '
                                 '`seg_tool build-engine`')
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self._dtypes = {name: np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
                        for name in names}
        inputs = {name: ONNX_TYPE_NAMES.get(self._dtypes[name], str(self._dtypes[name]))
                  for name in names
                  if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT}
        outputs = {name: (ONNX_TYPE_NAMES.get(self._dtypes[name], str(self._dtypes[name])),
                          list(self.engine.get_tensor_shape(name)))
                   for name in names if name not in inputs}
        self.info = check_contract(engine_file, inputs, outputs, sidecar.get('metadata', {}))
        low, _, high = self.engine.get_tensor_profile_shape(INPUT_NAME, 0)
        self.profile_range = (tuple(low)[:3], tuple(high)[:3])
        self.max_batch = int(high[0])
        self._stream = _cuda(cudart, 'cudaStreamCreate')
        self._stream_handle = _stream_handle(self._stream)

    @staticmethod
    def available() -> bool:
        """Return whether TensorRT and cuda-python import and a CUDA device is present."""
        try:
            import_runtime()
        except (ModelLoadError, ConfigError):
            return False
        return True

    def _free(self) -> None:
        for pointer in self._device.values():
            _cuda(self._cudart, 'cudaFree', pointer)
        for pointer in self._pinned.values():
            _cuda(self._cudart, 'cudaFreeHost', pointer)
        self._device, self._pinned, self._host = {}, {}, {}
        self._shape = None

    def _allocate(self, batch: int, height: int, width: int) -> None:
        """Set the input shape and (re)allocate device and pinned buffers for every tensor."""
        low, high = self.profile_range
        wanted = (batch, height, width)
        if not all(a <= b <= c for a, b, c in zip(low, wanted, high, strict=True)):
            raise ConfigError(f'{batch} frame(s) of {height}x{width} are outside the engine '
                              f'profile {"x".join(map(str, low))}..{"x".join(map(str, high))} '
                              f'(NxHxW) of {self.engine_path}; set inference_size (and '
                              'max_batch) to fit it or rebuild with --min/--max')
        self._free()
        self.context.set_input_shape(INPUT_NAME, (batch, height, width, 3))
        for name, dtype in self._dtypes.items():
            shape = tuple(self.context.get_tensor_shape(name))
            size = int(np.prod(shape)) * dtype.itemsize
            self._device[name] = _cuda(self._cudart, 'cudaMalloc', size)
            self._pinned[name] = _cuda(self._cudart, 'cudaMallocHost', size)
            raw = ctypes.cast(self._pinned[name], ctypes.POINTER(ctypes.c_uint8))
            self._host[name] = np.ctypeslib.as_array(raw, (size,)).view(dtype).reshape(shape)
            self.context.set_tensor_address(name, self._device[name])
        self._shape = (batch, height, width)

    def _copy(self, name: str, kind: str) -> None:
        """Queue a copy of tensor ``name`` between its pinned and device buffers."""
        device, host = self._device[name], self._pinned[name]
        source, target = (host, device) if kind == 'HostToDevice' else (device, host)
        _cuda(self._cudart, 'cudaMemcpyAsync', target, source, self._host[name].nbytes,
              getattr(self._cudart.cudaMemcpyKind, f'cudaMemcpy{kind}'), self._stream)

    def infer_batch(self, images: np.ndarray, confidence: bool = True,
                    probabilities: bool = False) -> SegResult:
        """Segment (N, H, W, 3) uint8 frames; see :class:`~seg_node.core.inference.Backend`."""
        if self._shape != images.shape[:3]:
            self._allocate(*images.shape[:3])
        np.copyto(self._host[INPUT_NAME], images)
        self._copy(INPUT_NAME, 'HostToDevice')
        if not self.context.execute_async_v3(self._stream_handle):
            raise ModelLoadError(f'TensorRT failed to run {self.engine_path}')
        wanted = [LABELS] + [CONFIDENCE] * confidence + [PROBABILITIES] * probabilities
        for name in wanted:
            self._copy(name, 'DeviceToHost')
        _cuda(self._cudart, 'cudaStreamSynchronize', self._stream)
        return SegResult(self._host[LABELS], self._host[CONFIDENCE] if confidence else None,
                         self._host[PROBABILITIES] if probabilities else None)

    def close(self) -> None:
        """Release the CUDA buffers and stream (the backend cannot run afterwards)."""
        if self._stream is not None:
            self._free()
            _cuda(self._cudart, 'cudaStreamDestroy', self._stream)
            self._stream = None

    def __del__(self) -> None:
        """Release CUDA resources when the backend is garbage-collected."""
        self.close()
