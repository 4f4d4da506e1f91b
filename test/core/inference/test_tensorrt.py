"""TensorRT backend and engine builder: without a GPU, on CPU stand-ins, and on a real GPU.

Here (no GPU) the backend must fail with one clear line; its engine lookup, build steps and
buffer handling run against CPU stand-ins of ``tensorrt`` and ``cuda.bindings.runtime``; the
parity and benchmark tests run only where a GPU and TensorRT exist and skip elsewhere.
"""

import ctypes
import re
import shutil
import sys
import time
import types
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import CAMVID_FIXTURES

from seg_node.tools.cli.main import main
from seg_node.core.errors import ConfigError, ModelLoadError
from seg_node.evaluation.scoring import latency_percentiles
from seg_node.core.inference import engine_cache, tensorrt
from seg_node.core.inference.base import backend_available, create_backend
from seg_node.core.inference.onnxruntime import OnnxRuntimeBackend
from seg_node.core.inference.tensorrt import TensorRTBackend
from seg_node.training.quantize import calibration_images, quantize_model


def _unavailable_reason() -> str | None:
    try:
        tensorrt.import_runtime()
    except ModelLoadError as err:
        return str(err)
    return None


UNAVAILABLE = _unavailable_reason()
needs_gpu = pytest.mark.skipif(
    UNAVAILABLE is not None,
    reason=f'TensorRT needs an NVIDIA GPU and the tensorrt package: {UNAVAILABLE}')
FAKE_ENV = {'tensorrt_version': '10.3.0', 'device_name': 'Fake GPU', 'compute_capability': '8.7'}
FAKE_ENGINE = b'fake serialized engine'


class FakeCuda:
    """Host-memory stand-in of ``cuda.bindings.runtime``: pointers are ctypes buffer addresses.

    :meth:`runtime` returns the module-like namespace; ``buffers`` holds live allocations and
    ``calls`` records allocations, copies and stream destruction.
    """

    def __init__(self, devices: int = 1, name: bytes = b'Fake GPU',
                 capability: tuple[int, int] = (8, 7)) -> None:
        self.buffers: dict[int, ctypes.Array] = {}
        self.calls: list[tuple] = []
        self.devices = devices
        self.properties = types.SimpleNamespace(name=name, major=capability[0],
                                                minor=capability[1])

    def _allocate(self, size: int) -> tuple:
        buffer = ctypes.create_string_buffer(size)
        self.buffers[ctypes.addressof(buffer)] = buffer
        self.calls.append(('malloc', size))
        return 0, ctypes.addressof(buffer)

    def _free(self, pointer: int) -> tuple:
        del self.buffers[pointer]
        return (0,)

    def _copy(self, target: int, source: int, size: int, kind: str, stream: int) -> tuple:
        ctypes.memmove(target, source, size)
        self.calls.append((kind, size))
        return (0,)

    def _destroy(self, stream: int) -> tuple:
        self.calls.append(('destroy', stream))
        return (0,)

    def runtime(self) -> types.SimpleNamespace:
        """Return the namespace the backend calls as ``cudart``."""
        return types.SimpleNamespace(**{
            'cudaError_t': types.SimpleNamespace(cudaSuccess=0),
            'cudaMemcpyKind': types.SimpleNamespace(cudaMemcpyHostToDevice='h2d',
                                                    cudaMemcpyDeviceToHost='d2h'),
            'cudaGetDeviceCount': lambda: (0, self.devices),
            'cudaGetDeviceProperties': lambda device: (0, self.properties),
            'cudaStreamCreate': lambda: (0, 7),
            'cudaMalloc': self._allocate, 'cudaMallocHost': self._allocate,
            'cudaFree': self._free, 'cudaFreeHost': self._free,
            'cudaMemcpyAsync': self._copy,
            'cudaStreamSynchronize': lambda stream: (0,),
            'cudaStreamDestroy': self._destroy})


class FakeContext:
    """An execution context that runs the ONNX model with ONNX Runtime on the 'device'."""

    def __init__(self, engine: 'FakeEngine') -> None:
        self.engine = engine
        self.addresses: dict[str, int] = {}
        self.height = self.width = 0

    def set_input_shape(self, name: str, shape: tuple) -> bool:
        self.height, self.width = shape[1:3]
        return True

    def get_tensor_shape(self, name: str) -> tuple:
        size = (self.height, self.width)
        return {'image': (1, *size, 3), 'labels': (1, *size), 'confidence': (1, *size),
                'probabilities': (1, 11, *size)}[name]

    def set_tensor_address(self, name: str, address: int) -> bool:
        self.addresses[name] = address
        return True

    def _view(self, name: str) -> np.ndarray:
        dtype = self.engine.dtypes[name]
        shape = self.get_tensor_shape(name)
        raw = ctypes.cast(self.addresses[name], ctypes.POINTER(ctypes.c_uint8))
        return np.ctypeslib.as_array(raw, (int(np.prod(shape)) * dtype.itemsize,)).view(
            dtype).reshape(shape)

    def execute_async_v3(self, stream: int) -> bool:
        outputs = self.engine.session.run(None, {'image': self._view('image')})
        for arg, value in zip(self.engine.session.get_outputs(), outputs, strict=True):
            self._view(arg.name)[...] = value
        return True


class FakeEngine:
    """A deserialized engine of the contract with a 240x320..360x480 profile."""

    dtypes = {'image': np.dtype(np.uint8), 'labels': np.dtype(np.uint8),
              'confidence': np.dtype(np.float32), 'probabilities': np.dtype(np.float32)}
    num_layers = 12

    def __init__(self, model_path: Path) -> None:
        self.session = ort.InferenceSession(str(model_path), providers=['CPUExecutionProvider'])
        self.num_io_tensors = len(self.dtypes)

    def get_tensor_name(self, index: int) -> str:
        return list(self.dtypes)[index]

    def get_tensor_dtype(self, name: str) -> np.dtype:
        return self.dtypes[name]

    def get_tensor_mode(self, name: str) -> str:
        return 'input' if name == 'image' else 'output'

    def get_tensor_shape(self, name: str) -> tuple:
        return (-1, 11, -1, -1) if name == 'probabilities' else (-1, -1, -1)

    def get_tensor_profile_shape(self, name: str, profile: int) -> list:
        return [(1, 240, 320, 3), (1, 360, 480, 3), (1, 360, 480, 3)]

    def create_execution_context(self) -> FakeContext:
        return FakeContext(self)


class FakeLogger:
    """``tensorrt.Logger``: takes a severity, logs nothing."""

    WARNING = 2

    def __init__(self, severity: int) -> None:
        self.severity = severity


class FakeNetwork:
    """A parsed network: one layer per ONNX node, typed 'quantize' for QuantizeLinear."""

    def __init__(self) -> None:
        self.layers: list[types.SimpleNamespace] = []

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def get_layer(self, index: int) -> types.SimpleNamespace:
        return self.layers[index]


class FakeParser:
    """``tensorrt.OnnxParser`` that reads node types with the onnx package."""

    num_errors = 0

    def __init__(self, network: FakeNetwork, logger: FakeLogger) -> None:
        self.network = network

    def parse_from_file(self, path: str) -> bool:
        self.network.layers = [
            types.SimpleNamespace(type='quantize' if node.op_type == 'QuantizeLinear' else '')
            for node in onnx.load(path).graph.node]
        return True


class FakeTimingCache:
    """A timing cache whose serialized form grows by one entry per build."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def serialize(self) -> bytes:
        return self.data + b'entry;'


class FakeBuilder:
    """``tensorrt.Builder`` recording its configuration; builds :data:`FAKE_ENGINE`."""

    last_config: types.SimpleNamespace | None = None

    def __init__(self, logger: FakeLogger) -> None:
        self.logger = logger

    def create_network(self, flags: int) -> FakeNetwork:
        assert flags == 0
        return FakeNetwork()

    def create_optimization_profile(self) -> types.SimpleNamespace:
        profile = types.SimpleNamespace(shapes={})
        profile.set_shape = lambda name, *shapes: profile.shapes.update({name: shapes})
        return profile

    def create_builder_config(self) -> types.SimpleNamespace:
        config = types.SimpleNamespace(flags={'tf32'}, profiles=[], pools={}, cache=None)
        config.set_memory_pool_limit = lambda pool, size: config.pools.update({pool: size})
        config.set_flag = config.flags.add
        config.clear_flag = config.flags.discard
        config.add_optimization_profile = config.profiles.append
        config.create_timing_cache = FakeTimingCache
        config.set_timing_cache = lambda cache, ignore_mismatch: setattr(config, 'cache', cache)
        FakeBuilder.last_config = config
        return config

    def build_serialized_network(self, network: FakeNetwork,
                                 config: types.SimpleNamespace) -> bytes:
        monitor = config.progress_monitor
        monitor.phase_start('Building engine', None, 2)
        monitor.phase_start('Tactic search', 'Building engine', 5)
        assert monitor.step_complete('Building engine', 0)
        monitor.phase_finish('Tactic search')
        monitor.phase_finish('Building engine')
        return FAKE_ENGINE


def fake_tensorrt(model_path: Path) -> types.SimpleNamespace:
    """Return a ``tensorrt`` stand-in whose runtime deserializes :data:`FAKE_ENGINE` only."""
    def deserialize(data: bytes) -> FakeEngine | None:
        return FakeEngine(model_path) if data == FAKE_ENGINE else None

    return types.SimpleNamespace(
        __version__='10.3.0', Logger=FakeLogger, Builder=FakeBuilder, OnnxParser=FakeParser,
        IProgressMonitor=type('IProgressMonitor', (), {'__init__': lambda self: None}),
        LayerType=types.SimpleNamespace(QUANTIZE='quantize'),
        MemoryPoolType=types.SimpleNamespace(WORKSPACE='workspace'),
        BuilderFlag=types.SimpleNamespace(FP16='fp16', INT8='int8', TF32='tf32'),
        Runtime=lambda logger: types.SimpleNamespace(deserialize_cuda_engine=deserialize),
        TensorIOMode=types.SimpleNamespace(INPUT='input'), nptype=lambda dtype: dtype)


@pytest.fixture
def model(tiny_model: Path, tmp_path: Path) -> Path:
    """Return a private copy of the tiny model, so engines beside it stay in this test."""
    return Path(shutil.copy(tiny_model, tmp_path / 'tiny.onnx'))


@pytest.fixture
def fake_runtime(model: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCuda:
    """Make the backend see the CPU stand-ins of TensorRT and CUDA."""
    cuda = FakeCuda()
    fake = fake_tensorrt(model)
    monkeypatch.setattr(tensorrt, 'import_runtime', lambda: (fake, cuda.runtime()))
    return cuda


def fake_key(model: Path, precision: str = 'fp16') -> engine_cache.EngineKey:
    info, _ = tensorrt.read_onnx(model)
    return tensorrt.engine_key(model, precision, tensorrt.profile_for(info), FAKE_ENV)


def test_module_imports_without_tensorrt_and_auto_falls_back(tiny_model):
    if UNAVAILABLE is None:
        pytest.skip('this machine has TensorRT and a GPU: auto picks tensorrt here')
    assert TensorRTBackend.available() is False
    assert backend_available('tensorrt') is False
    assert create_backend('auto', tiny_model).name == 'onnxruntime'


def test_backend_without_tensorrt_raises_one_clear_line(tiny_model):
    if UNAVAILABLE is None:
        pytest.skip('this machine has TensorRT and a GPU')
    with pytest.raises(ModelLoadError) as error:
        create_backend('tensorrt', tiny_model)
    message = str(error.value)
    assert message.startswith('TensorRT is not available here') and '\n' not in message
    assert "pip install 'seg_node[tensorrt]'" in message


def test_build_engine_command_without_gpu_exits_1_with_one_line(tiny_model, capsys):
    if UNAVAILABLE is None:
        pytest.skip('this machine has TensorRT and a GPU')
    assert main(['build-engine', str(tiny_model), '--precision', 'fp32']) == 1
    captured = capsys.readouterr()
    assert captured.out == ''
    assert captured.err.count('\n') == 1 and 'Traceback' not in captured.err
    assert captured.err.startswith('seg_tool: error: TensorRT is not available here')


def install_fake_modules(monkeypatch: pytest.MonkeyPatch, version: str, devices: int) -> None:
    """Make ``import tensorrt`` and ``cuda.bindings.runtime`` find stand-ins."""
    monkeypatch.setitem(sys.modules, 'tensorrt', types.SimpleNamespace(__version__=version))
    monkeypatch.setitem(sys.modules, 'cuda', types.ModuleType('cuda'))
    monkeypatch.setitem(sys.modules, 'cuda.bindings', types.SimpleNamespace(
        runtime=FakeCuda(devices=devices).runtime(), __path__=[]))


def test_installed_tensorrt_without_a_device_is_unavailable(monkeypatch):
    install_fake_modules(monkeypatch, '10.3.0', devices=0)
    assert TensorRTBackend.available() is False
    with pytest.raises(ModelLoadError, match=r'no CUDA device is usable \(no devices\)'):
        tensorrt.import_runtime()


def test_tensorrt_11_is_refused_with_what_to_install(monkeypatch):
    install_fake_modules(monkeypatch, '11.4.0.106', devices=1)
    assert TensorRTBackend.available() is False
    with pytest.raises(ModelLoadError, match=r"TensorRT 11.4.0.106 is installed, but .* "
                                             r"TensorRT 10 .*install 'tensorrt>=10,<11'"):
        tensorrt.import_runtime()


def test_profile_and_timing_cache_defaults(tiny_model):
    info, metadata = tensorrt.read_onnx(tiny_model)
    assert metadata['inference_size'] == '360x480'
    profile = tensorrt.profile_for(info, min_shape='240x320')
    assert (profile.min, profile.opt, profile.max) == ((1, 240, 320), (1, 360, 480),
                                                       (1, 360, 480))
    cache = tensorrt.default_timing_cache(tiny_model, FAKE_ENV)
    assert cache == tiny_model.with_name('tensorrt-10.3.0-sm87.timing-cache')


def test_missing_engine_is_explained_not_built(model, fake_runtime):
    with pytest.raises(ModelLoadError, match='no TensorRT engine of .* matches fp16.*Fake GPU'):
        TensorRTBackend(model)
    assert not list(model.parent.glob('*.engine'))


def test_cached_engine_runs_with_buffers_per_shape_and_only_asked_outputs(
        model, fake_runtime, camvid_rgb):
    engine_cache.write_engine(model, fake_key(model), FAKE_ENGINE,
                              tensorrt.read_onnx(model)[1])
    backend = create_backend('tensorrt', model, options={'tensorrt': {'precision': 'fp16'}})
    assert (backend.name, backend.precision, backend.info.num_classes) == ('tensorrt', 'fp16', 11)
    assert backend.info == OnnxRuntimeBackend(model).info
    reference = OnnxRuntimeBackend(model).infer(camvid_rgb, probabilities=True)

    result = backend.infer(camvid_rgb, confidence=False)
    np.testing.assert_array_equal(result.labels, reference.labels)
    assert result.confidence is None and result.probabilities is None
    mallocs = [call for call in fake_runtime.calls if call[0] == 'malloc']
    assert len(mallocs) == 8
    copies = [call for call in fake_runtime.calls if call[0] in ('h2d', 'd2h')]
    assert copies == [('h2d', 360 * 480 * 3), ('d2h', 360 * 480)]

    fake_runtime.calls.clear()
    result = backend.infer(camvid_rgb, confidence=True, probabilities=True)
    np.testing.assert_allclose(result.confidence, reference.confidence, rtol=1e-6)
    np.testing.assert_allclose(result.probabilities, reference.probabilities, rtol=1e-6)
    assert [call[0] for call in fake_runtime.calls] == ['h2d', 'd2h', 'd2h', 'd2h']

    fake_runtime.calls.clear()
    small = np.ascontiguousarray(camvid_rgb[:240, :320])
    assert backend.infer(small, confidence=False).labels.shape == (240, 320)
    assert len(fake_runtime.buffers) == 8
    assert [call[0] for call in fake_runtime.calls].count('malloc') == 8
    with pytest.raises(ConfigError, match='outside the engine profile 1x240x320..1x360x480'):
        backend.infer(np.zeros((200, 320, 3), np.uint8))
    backend.close()
    assert fake_runtime.buffers == {} and fake_runtime.calls[-1] == ('destroy', 7)


def test_engine_file_given_directly_is_checked_against_this_machine(
        model, fake_runtime, monkeypatch, camvid_rgb):
    engine = engine_cache.write_engine(model, fake_key(model, 'fp32'), FAKE_ENGINE,
                                       tensorrt.read_onnx(model)[1])
    backend = TensorRTBackend(engine)
    assert backend.precision == 'fp32' and backend.engine_path == engine
    assert backend.infer(camvid_rgb).labels.shape == (360, 480)
    other = FakeCuda(name=b'Other GPU', capability=(9, 0)).runtime()
    fake = fake_tensorrt(model)
    monkeypatch.setattr(tensorrt, 'import_runtime', lambda: (fake, other))
    with pytest.raises(ModelLoadError, match="device_name: engine has 'Fake GPU', expected "
                                             "'Other GPU'; compute_capability"):
        TensorRTBackend(engine)


def test_build_engine_configures_the_builder_and_caches_engine_and_timing(
        model, fake_runtime):
    lines: list[str] = []
    summary = tensorrt.build_engine(model, 'fp16', tensorrt.profile_for(
        tensorrt.read_onnx(model)[0], min_shape='240x320'), workspace_mb=512, log=lines.append)
    config = FakeBuilder.last_config
    assert config.flags == {'tf32', 'fp16'} and config.pools == {'workspace': 512 << 20}
    assert config.profiles[0].shapes == {'image': ((1, 240, 320, 3), (1, 360, 480, 3),
                                                   (1, 360, 480, 3))}
    assert config.cache.data == b''
    assert lines[0].startswith('building fp16 engine of tiny.onnx (')
    assert lines[1] == 'Building engine (2 steps)...' and len(lines) == 3
    assert re.fullmatch(r'Building engine done in \d+\.\d s', lines[2])
    key = tensorrt.engine_key(model, 'fp16', summary.profile, FAKE_ENV)
    assert summary.engine == engine_cache.find_engine(model, key)
    assert summary.engine.read_bytes() == FAKE_ENGINE
    assert (summary.engine_bytes, summary.engine_layers) == (len(FAKE_ENGINE), 12)
    assert summary.network_layers == len(onnx.load(str(model)).graph.node)
    assert summary.timing_cache.read_bytes() == b'entry;' and not summary.timing_cache_reused
    assert summary.describe().startswith(f'built {summary.engine} in ')

    second = tensorrt.build_engine(model, 'fp32', log=lines.append)
    assert FakeBuilder.last_config.flags == set()
    assert second.timing_cache_reused and second.timing_cache.read_bytes() == b'entry;entry;'
    assert second.engine != summary.engine
    assert '(reused)' in second.describe()


def test_precision_must_fit_the_model(model, fake_runtime, tmp_path):
    with pytest.raises(ConfigError, match='needs a Q/DQ model'):
        tensorrt.build_engine(model, 'int8', log=lambda line: None)
    int8_path = tmp_path / 'tiny_int8.onnx'
    quantize_model(model, int8_path, calibration_images(CAMVID_FIXTURES, 'val', 1))
    with pytest.raises(ConfigError, match='Q/DQ-quantised model: build it with precision int8'):
        tensorrt.build_engine(int8_path, 'fp16', log=lambda line: None)
    summary = tensorrt.build_engine(int8_path, 'int8', log=lambda line: None)
    assert FakeBuilder.last_config.flags == {'tf32', 'fp16', 'int8'}
    assert summary.engine.name.startswith('tiny_int8.int8.')


def test_backend_builds_a_missing_engine_when_asked_and_says_so(model, fake_runtime,
                                                                camvid_rgb):
    lines: list[str] = []
    backend = TensorRTBackend(model, precision='fp32', build_engine_if_missing=True,
                              log=lines.append)
    assert lines[0].startswith('no cached engine of tiny.onnx') and 'building' in lines[0]
    assert lines[-1].startswith(f'built {backend.engine_path} in ')
    assert backend.precision == 'fp32'
    assert backend.infer(camvid_rgb).labels.shape == (360, 480)
    lines.clear()
    assert TensorRTBackend(model, precision='fp32', log=lines.append).engine_path == (
        backend.engine_path)
    assert lines == []


@pytest.fixture(scope='module')
def gpu_model(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    folder = tmp_path_factory.mktemp('engines')
    return Path(shutil.copy(tiny_model, folder / 'tiny.onnx'))


def label_agreement(backend: object, reference: OnnxRuntimeBackend, pairs: list) -> float:
    """Fraction of pixels where two backends give the same label on the frames of ``pairs``."""
    same = total = 0
    for image, _ in pairs:
        expected = reference.infer(image, confidence=False).labels.copy()
        same += int((backend.infer(image, confidence=False).labels == expected).sum())
        total += expected.size
    return same / total


@needs_gpu
@pytest.mark.parametrize(('precision', 'minimum'), [('fp32', 0.999), ('fp16', 0.99)])
def test_tensorrt_labels_match_onnxruntime(gpu_model, camvid_pairs, precision, minimum):
    backend = TensorRTBackend(gpu_model, precision=precision, build_engine_if_missing=True)
    agreement = label_agreement(backend, OnnxRuntimeBackend(gpu_model), camvid_pairs)
    assert agreement >= minimum, f'{precision}: {agreement:.5f}'
    again = TensorRTBackend(gpu_model, precision=precision)
    assert again.engine_path == backend.engine_path


@needs_gpu
def test_build_engine_command_reuses_a_matching_engine(gpu_model, capsys):
    assert main(['build-engine', str(gpu_model), '--precision', 'fp16']) == 0
    assert capsys.readouterr().out.startswith('up to date: ')


@needs_gpu
def test_int8_engine_from_the_qdq_model(gpu_model, camvid_pairs):
    int8_path = gpu_model.with_name('tiny_int8.onnx')
    quantize_model(gpu_model, int8_path, calibration_images(CAMVID_FIXTURES, 'val', 2))
    with pytest.raises(ConfigError, match='Q/DQ-quantised model'):
        tensorrt.build_engine(int8_path, 'fp16')
    summary = tensorrt.build_engine(int8_path, 'int8')
    assert summary.engine.exists() and summary.engine_layers > 0
    backend = TensorRTBackend(int8_path, precision='int8')
    agreement = label_agreement(backend, OnnxRuntimeBackend(int8_path), camvid_pairs)
    assert agreement >= 0.95, agreement


@needs_gpu
def test_benchmark_tensorrt_against_onnxruntime(gpu_model, camvid_rgb):
    backends = {'onnxruntime': OnnxRuntimeBackend(gpu_model),
                'tensorrt-fp16': TensorRTBackend(gpu_model, precision='fp16',
                                                 build_engine_if_missing=True)}
    latencies: dict[str, list[float]] = {name: [] for name in backends}
    for _ in range(30):
        for name, backend in backends.items():
            start = time.perf_counter()
            backend.infer(camvid_rgb, confidence=True)
            latencies[name].append(time.perf_counter() - start)
    report = {name: latency_percentiles(values[5:]) for name, values in latencies.items()}
    print(report)
    assert report['tensorrt-fp16']['p50'] < report['onnxruntime']['p50']
