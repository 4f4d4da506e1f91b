"""TensorRT backend and engine builder (TensorRT 10 Python API; CUDA memory from cuda-python).

The backend runs a serialized engine with name-based I/O (``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``) on its own CUDA stream. Device buffers and
pinned (page-locked) host buffers are allocated once per frame size; each frame is one
host-to-device copy of the uint8 image, the engine, and device-to-host copies of ``labels``
plus only the other outputs asked for.

CUDA memory, streams and copies come from cuda-python (``cuda.bindings.runtime``), a thin
binding of the CUDA runtime of a few MB. Torch could allocate the same buffers, but it would
put a multi-GB dependency on the car's runtime path for nothing else. Both ``tensorrt`` and
``cuda-python`` are the optional extra ``tensorrt`` (``pip install 'seg_node[tensorrt]'``) and
are imported only inside functions, so this module imports on machines without them, where
:meth:`TensorRTBackend.available` is False and everything else raises
:class:`~seg_node.core.errors.ModelLoadError` with one line saying why.

Engines are found, checked and stored by :mod:`seg_node.core.inference.engine_cache`.
"""

import ctypes
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seg_node.core.errors import ConfigError, ModelLoadError
from seg_node.core.inference import engine_cache
from seg_node.core.inference.base import (CONFIDENCE, first_frame, LABELS, PROBABILITIES,
                                          SegResult)
from seg_node.core.inference.contract import check_contract, INPUT_NAME, ModelInfo
from seg_node.core.inference.engine_cache import EngineKey, Profile

DEFAULT_SIZE = (360, 480)
DEFAULT_WORKSPACE_MB = 2048
ONNX_TYPE_NAMES = {np.dtype(np.uint8): 'tensor(uint8)', np.dtype(np.float32): 'tensor(float)'}
INSTALL_HINT = ("install the `tensorrt` extra (pip install 'seg_node[tensorrt]') on a machine "
                'with an NVIDIA GPU, or use backend onnxruntime')

Log = Callable[[str], None]


def _stderr_log(message: str) -> None:
    print(f'seg_node tensorrt: {message}', file=sys.stderr, flush=True)


def import_runtime() -> tuple:
    """Return the ``tensorrt`` and ``cuda.bindings.runtime`` modules.

    Raises:
        ModelLoadError: either is not installed, TensorRT is not major version 10, or no
            CUDA device is visible.
    """
    try:
        import tensorrt as trt
        from cuda.bindings import runtime as cudart
    except ImportError as err:
        raise ModelLoadError(f'TensorRT is not available here ({err}); {INSTALL_HINT}') from err
    if trt.__version__.split('.')[0] != '10':
        raise ModelLoadError(f'TensorRT {trt.__version__} is installed, but seg_node is written '
                             'for TensorRT 10 (TensorRT 11 removed the FP16/INT8 builder flags '
                             "it uses); install 'tensorrt>=10,<11' or use backend onnxruntime")
    error, count = cudart.cudaGetDeviceCount()
    if error != cudart.cudaError_t.cudaSuccess or count == 0:
        reason = 'no devices' if error == cudart.cudaError_t.cudaSuccess else error.name
        raise ModelLoadError(f'TensorRT is installed but no CUDA device is usable ({reason}); '
                             + INSTALL_HINT)
    return trt, cudart


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


def environment(trt: object, cudart: object) -> dict[str, str]:
    """Return this machine's engine-key environment fields.

    Args:
        trt: the ``tensorrt`` module.
        cudart: the ``cuda.bindings.runtime`` module.

    Returns:
        ``tensorrt_version``, ``device_name`` and ``compute_capability`` ("major.minor") of
        CUDA device 0.
    """
    properties = _cuda(cudart, 'cudaGetDeviceProperties', 0)
    name = properties.name
    name = name.decode(errors='replace') if isinstance(name, bytes) else str(name)
    return {'tensorrt_version': trt.__version__, 'device_name': name.rstrip('\0').strip(),
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


def engine_key(model_path: Path, precision: str, profile: Profile,
               env: dict[str, str]) -> EngineKey:
    """Return the cache key of building ``model_path`` here at ``precision`` and ``profile``."""
    return EngineKey(onnx_sha256=engine_cache.file_sha256(model_path), precision=precision,
                     profile=profile, **env)


def default_timing_cache(model_path: Path, env: dict[str, str]) -> Path:
    """Return the timing cache file shared by builds in the model's folder on this GPU."""
    capability = env['compute_capability'].replace('.', '')
    return Path(model_path).with_name(
        f'tensorrt-{env["tensorrt_version"]}-sm{capability}.timing-cache')


@dataclass
class BuildSummary:
    """What a build produced.

    Attributes:
        engine: the engine file (its sidecar is ``<engine>.json``).
        precision: fp32, fp16 or int8.
        profile: the input's optimisation profile.
        network_layers: layers TensorRT parsed from the ONNX graph.
        engine_layers: layers of the optimised engine (after fusion).
        seconds: build wall time.
        engine_bytes: size of the serialized engine.
        timing_cache: the timing cache file read (if present) and updated.
        timing_cache_reused: whether that file existed before the build.
    """

    engine: Path
    precision: str
    profile: Profile
    network_layers: int
    engine_layers: int
    seconds: float
    engine_bytes: int
    timing_cache: Path
    timing_cache_reused: bool

    def describe(self) -> str:
        """Return a one-line human summary."""
        cache = 'reused' if self.timing_cache_reused else 'created'
        return (f'built {self.engine} in {self.seconds:.1f} s: {self.precision}, '
                f'{self.network_layers} network layers -> {self.engine_layers} engine layers, '
                f'{self.engine_bytes / 1e6:.2f} MB, profile {self.profile.describe()}; '
                f'timing cache {self.timing_cache} ({cache})')


def _progress_monitor(trt: object, log: Log) -> object:
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


def build_engine(model_path: Path, precision: str = 'fp16', profile: Profile | None = None,
                 workspace_mb: int = DEFAULT_WORKSPACE_MB, timing_cache: Path | None = None,
                 log: Log = _stderr_log) -> BuildSummary:
    """Build and cache a TensorRT engine of an ONNX model of the contract.

    Args:
        model_path: the ONNX file; ``int8`` needs a QDQ model (``seg_tool quantize``).
        precision: fp32 (TF32 off, for parity with ONNX Runtime), fp16, or int8 (which also
            enables fp16 for the unquantised layers).
        profile: (N, H, W) optimisation profile; None: fixed at the model's inference size.
        workspace_mb: builder workspace memory limit in MiB.
        timing_cache: timing cache file; None: :func:`default_timing_cache`.
        log: receives progress lines.

    Raises:
        ModelLoadError: no TensorRT/GPU, a model outside the contract, a parse or build
            failure.
        ConfigError: an invalid precision or profile, or a precision that does not fit the
            model (int8 without Q/DQ nodes, or a QDQ model at fp32/fp16).
    """
    trt, cudart = import_runtime()
    env = environment(trt, cudart)
    model_path = Path(model_path)
    info, metadata = read_onnx(model_path)
    profile = profile or profile_for(info)
    key = engine_key(model_path, precision, profile, env)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(model_path)):
        errors = '; '.join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelLoadError(f'TensorRT cannot parse {model_path}: {errors}')
    quantized = any(network.get_layer(i).type == trt.LayerType.QUANTIZE
                    for i in range(network.num_layers))
    if quantized and precision != 'int8':
        raise ConfigError(f'{model_path} is a Q/DQ-quantised model: build it with precision '
                          'int8')
    if precision == 'int8' and not quantized:
        raise ConfigError(f'precision int8 needs a Q/DQ model but {model_path} has no '
                          'QuantizeLinear nodes; make one with `seg_tool quantize`')
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if precision == 'fp32':
        config.clear_flag(trt.BuilderFlag.TF32)
    if precision in ('fp16', 'int8'):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == 'int8':
        config.set_flag(trt.BuilderFlag.INT8)
    optimisation = builder.create_optimization_profile()
    optimisation.set_shape(INPUT_NAME, (*profile.min, 3), (*profile.opt, 3), (*profile.max, 3))
    config.add_optimization_profile(optimisation)
    timing_cache = Path(timing_cache or default_timing_cache(model_path, env))
    reused = timing_cache.exists()
    cache = config.create_timing_cache(timing_cache.read_bytes() if reused else b'')
    config.set_timing_cache(cache, ignore_mismatch=False)
    monitor = _progress_monitor(trt, log)
    config.progress_monitor = monitor
    log(f'building {precision} engine of {model_path.name} ({network.num_layers} layers, '
        f'profile {profile.describe()}) on {env["device_name"]}; this takes minutes')
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    if serialized is None:
        raise ModelLoadError(f'TensorRT failed to build an engine of {model_path} (see its '
                             'messages above)')
    timing_cache.write_bytes(bytes(cache.serialize()))
    data = bytes(serialized)
    engine = trt.Runtime(logger).deserialize_cuda_engine(data)
    path = engine_cache.write_engine(model_path, key, data, metadata)
    return BuildSummary(path, precision, profile, network.num_layers, engine.num_layers,
                        seconds, len(data), timing_cache, reused)


class TensorRTBackend:
    """GPU inference of a TensorRT engine with buffers allocated once per frame size."""

    name = 'tensorrt'

    def __init__(self, model_path: Path, num_threads: int = 0, precision: str = 'fp16',
                 build_engine_if_missing: bool = False, profile: Profile | None = None,
                 log: Log = _stderr_log) -> None:
        """Find (or build) the engine of ``model_path`` and prepare an execution context.

        Args:
            model_path: an ONNX model (its engine is looked up in the engine cache) or a
                ``.engine`` file (its sidecar must match this machine).
            num_threads: unused (the GPU does the work); accepted for the factory.
            precision: fp32, fp16 or int8 engine to look up for an ONNX model.
            build_engine_if_missing: build the engine at start if the cache has none.
            profile: optimisation profile to look up; None: :func:`profile_for` the model.
            log: receives progress lines when an engine is built.

        Raises:
            ModelLoadError: no TensorRT/GPU, no matching engine (naming what differs), or an
                engine that does not deserialize or follow the contract.
        """
        self._stream = None
        self._shape: tuple[int, int, int] | None = None
        self._device: dict[str, int] = {}
        self._pinned: dict[str, int] = {}
        self._host: dict[str, np.ndarray] = {}
        trt, cudart = import_runtime()
        self._cudart = cudart
        self.model_path = Path(model_path)
        env = environment(trt, cudart)
        if self.model_path.suffix == engine_cache.ENGINE_SUFFIX:
            engine_file = self.model_path
            data, sidecar = engine_cache.read_engine(engine_file, env,
                                                     engine_cache.ENVIRONMENT_FIELDS)
        else:
            info, _ = read_onnx(self.model_path)
            key = engine_key(self.model_path, precision, profile or profile_for(info), env)
            engine_file = engine_cache.find_engine(self.model_path, key)
            if engine_file is None:
                if not build_engine_if_missing:
                    raise ModelLoadError(engine_cache.explain_missing(self.model_path, key))
                log(f'no cached engine of {self.model_path.name} for this GPU and request; '
                    'building one now (build_engine_if_missing: true)')
                summary = build_engine(self.model_path, precision, key.profile, log=log)
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
        """Return whether ``tensorrt`` and cuda-python import and a CUDA device is present."""
        try:
            import_runtime()
        except ModelLoadError:
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

    def infer(self, image: np.ndarray, confidence: bool = True,
              probabilities: bool = False) -> SegResult:
        """Segment one (H, W, 3) uint8 RGB frame; see :class:`~seg_node.core.inference.Backend`."""
        return first_frame(self.infer_batch(np.asarray(image)[None], confidence,
                                            probabilities))

    def close(self) -> None:
        """Release the CUDA buffers and stream (the backend cannot run afterwards)."""
        if self._stream is not None:
            self._free()
            _cuda(self._cudart, 'cudaStreamDestroy', self._stream)
            self._stream = None

    def __del__(self) -> None:
        """Release CUDA resources when the backend is garbage-collected."""
        self.close()
