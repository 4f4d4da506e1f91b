"""TensorRT: real parsing and engine builds here, GPU execution on stand-ins, GPU-only checks.

What is real: TensorRT-RTX (``tensorrt_rtx``, pinned in requirements.txt) parses the shipped
model and builds fp32, fp16 and int8 (QDQ) engines ahead of time on this CPU through
``seg_tool build-engine``, with the real engine cache, keys, fp16 copy and timing cache; its
parser's refusal of a uint8 tensor inside the graph is recorded too.

Stand-ins (only for what cannot run without a GPU): executing an engine. :class:`FakeCuda`
replaces ``cuda.bindings.runtime`` (host memory instead of device memory) and
:class:`FakeEngine` replaces the deserialized engine, running the same ONNX file with ONNX
Runtime; they check the backend's engine lookup, buffers per frame size and copies. The
tests marked ``needs_gpu`` run an engine for real and skip on machines without a GPU
(``scripts/gpu_check.sh`` runs the same checks on a GPU machine and writes JSON).
"""

import ctypes
import hashlib
import json
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import CAMVID_FIXTURES

from seg_node.core.errors import ConfigError, ModelLoadError
from seg_node.core.inference import engine_cache, tensorrt
from seg_node.models import deploy_graph
from seg_node.core.inference.base import (backend_available, create_backend,
                                          label_agreement)
from seg_node.core.inference.onnxruntime import OnnxRuntimeBackend
from seg_node.core.inference.tensorrt import TensorRTBackend
from seg_node.models import DEFAULT_MODEL_PATH
from seg_node.tools.cli.main import main
from seg_node.training.quantize import calibration_images, quantize_model

rtx = pytest.importorskip('tensorrt_rtx', reason='requirements.txt pins tensorrt-rtx-cu12')


def _gpu_unavailable_reason() -> str | None:
    try:
        tensorrt.import_runtime()
    except (ModelLoadError, ConfigError) as err:
        return str(err)
    return None


UNAVAILABLE = _gpu_unavailable_reason()
needs_gpu = pytest.mark.skipif(UNAVAILABLE is not None,
                               reason=f'running an engine needs a GPU: {UNAVAILABLE}')
RTX_ENV = {'tensorrt_module': 'tensorrt_rtx', 'tensorrt_version': rtx.__version__,
           'device_name': 'any', 'compute_capability': 'portable'}


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


def rtx_without_gpu_runtime(model_path: Path, deserialized: list[bytes]) -> types.ModuleType:
    """Return the real ``tensorrt_rtx`` module except its Runtime, which needs a GPU.

    Its ``deserialize_cuda_engine`` records the engine bytes it gets and returns a
    :class:`FakeEngine` of ``model_path``.
    """
    module = types.ModuleType('tensorrt_rtx')
    module.__dict__.update({name: getattr(rtx, name) for name in dir(rtx)
                            if not name.startswith('__')})
    module.__version__ = rtx.__version__

    def deserialize(data: bytes) -> FakeEngine:
        deserialized.append(bytes(data))
        return FakeEngine(model_path)

    module.Runtime = lambda logger: types.SimpleNamespace(deserialize_cuda_engine=deserialize)
    module.TensorIOMode = types.SimpleNamespace(INPUT='input')
    module.nptype = lambda dtype: dtype
    return module


def build(model: Path, precision: str, engines: Path, capsys: pytest.CaptureFixture,
          *extra: str) -> tuple[int, list[str]]:
    """Run ``seg_tool build-engine`` with TensorRT-RTX; return its status and stdout lines."""
    status = main(['build-engine', str(model), '--precision', precision, '--engine-dir',
                   str(engines), '--tensorrt-module', 'tensorrt_rtx', *extra])
    return status, capsys.readouterr().out.splitlines()


@pytest.fixture(scope='module')
def engines(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One engine folder for this module's builds of the shipped model."""
    return tmp_path_factory.mktemp('engines')


@pytest.mark.parametrize('precision', ['fp32', 'fp16'])
def test_build_engine_builds_real_engines_of_the_shipped_model(engines, capsys, precision):
    status, lines = build(DEFAULT_MODEL_PATH, precision, engines, capsys)
    assert status == 0
    engine = Path(lines[-1])
    assert engine.parent == engines and engine.name.startswith(f'camvid_fast_fine.{precision}.')
    assert lines[0].startswith(f'built {precision} engine of camvid_fast_fine')
    assert f'with tensorrt_rtx {rtx.__version__} in ' in lines[0]
    assert engine.stat().st_size > 1_000_000
    sidecar = json.loads(engine_cache.sidecar_path(engine).read_text())
    assert {name: sidecar[name] for name in RTX_ENV} == RTX_ENV
    assert sidecar['precision'] == precision
    assert sidecar['engine_sha256'] == hashlib.sha256(engine.read_bytes()).hexdigest()
    assert sidecar['metadata']['arch'] == 'fast_fine'
    built_from = (DEFAULT_MODEL_PATH if precision == 'fp32' else
                  next(engines.glob('camvid_fast_fine.fp16.*.onnx')))
    assert sidecar['onnx_sha256'] == engine_cache.file_sha256(built_from)
    assert deploy_graph.model_precision(built_from) == precision
    assert not list(DEFAULT_MODEL_PATH.parent.glob('*.engine'))

    status, lines = build(DEFAULT_MODEL_PATH, precision, engines, capsys)
    assert status == 0 and lines[0].startswith('up to date') and lines[-1] == str(engine)


def test_int8_engine_builds_from_the_qdq_model_only(tiny_model, tmp_path, capsys):
    int8_path = tmp_path / 'tiny_int8.onnx'
    quantize_model(tiny_model, int8_path, calibration_images(CAMVID_FIXTURES, 'val', 1))
    status, lines = build(int8_path, 'int8', tmp_path / 'engines', capsys)
    assert status == 0 and Path(lines[-1]).name.startswith('tiny_int8.int8.')
    assert json.loads(engine_cache.sidecar_path(Path(lines[-1])).read_text())[
        'onnx_sha256'] == engine_cache.file_sha256(int8_path)
    assert main(['build-engine', str(int8_path), '--precision', 'fp16', '--engine-dir',
                 str(tmp_path / 'engines')]) == 1
    assert 'is an int8 model: precision fp16 needs an fp32 or fp16 model' in (
        capsys.readouterr().err)
    assert main(['build-engine', str(tiny_model), '--precision', 'int8', '--engine-dir',
                 str(tmp_path / 'engines')]) == 1
    assert '`seg_tool quantize MODEL --target tensorrt`' in capsys.readouterr().err


def test_tensorrt_refuses_a_uint8_tensor_inside_the_graph(tiny_model, tmp_path, capsys):
    """The reason for the UINT8 rule, as TensorRT-RTX's parser states it."""
    model = onnx.load(str(tiny_model))
    graph = model.graph
    cast = next(node for node in graph.node if node.input[0] == 'image')
    transpose = next(node for node in graph.node if node.input[0] == cast.output[0]
                     and node.op_type == 'Transpose')
    deploy_graph._swap(graph, cast, transpose)  # image -> Transpose (uint8) -> Cast
    violating = tmp_path / 'violating.onnx'
    onnx.save(model, str(violating))
    assert deploy_graph.uint8_edge_violation(violating).startswith(
        f"node '{transpose.name}' (Transpose) reads the uint8 input 'image'")
    status = main(['build-engine', str(violating), '--precision', 'fp32', '--engine-dir',
                   str(tmp_path)])
    error = capsys.readouterr().err.splitlines()[-1]
    assert status == 1
    assert error.startswith(f'seg_tool: error: tensorrt_rtx {rtx.__version__} cannot parse ')
    assert 'first input has type UInt8 but must have type Float' in error


def test_module_choice_versions_and_environment(monkeypatch):
    assert tensorrt.import_tensorrt('tensorrt_rtx') is rtx
    with pytest.raises(ConfigError, match="unknown TensorRT module 'tensorrt_llm'"):
        tensorrt.import_tensorrt('tensorrt_llm')
    assert tensorrt.environment(rtx) == RTX_ENV
    for version, accepted in (('10.3.0', True), ('11.0.0.1', True), ('12.0.0', False)):
        fake = types.ModuleType('tensorrt')
        fake.__version__ = version
        monkeypatch.setitem(sys.modules, 'tensorrt', fake)
        if accepted:
            assert tensorrt.import_tensorrt() is fake
            env = tensorrt.environment(fake, FakeCuda(capability=(9, 0)).runtime())
            assert env == {'tensorrt_module': 'tensorrt', 'tensorrt_version': version,
                           'device_name': 'Fake GPU', 'compute_capability': '9.0'}
        else:
            with pytest.raises(ModelLoadError, match=r'tensorrt 12.0.0 is installed, but '
                                                     r'seg_node builds with tensorrt 10.x '
                                                     r'or 11.x'):
                tensorrt.import_tensorrt()


def test_backend_needs_cuda_to_run_and_auto_falls_back(tiny_model):
    if UNAVAILABLE is None:
        pytest.skip('this machine can run engines: auto picks tensorrt here')
    assert TensorRTBackend.available() is False and backend_available('tensorrt') is False
    assert create_backend('auto', tiny_model).name == 'onnxruntime'
    with pytest.raises(ModelLoadError) as error:
        create_backend('tensorrt', tiny_model)
    assert '\n' not in str(error.value) and "pip install 'seg_node[tensorrt]'" in str(
        error.value)


def test_tensorrt_parity_without_a_gpu_exits_1_with_one_line(tiny_model, capsys):
    if UNAVAILABLE is None:
        pytest.skip('this machine can run engines')
    assert main(['tensorrt-parity', str(tiny_model), '--data', str(CAMVID_FIXTURES)]) == 1
    captured = capsys.readouterr()
    assert captured.out == '' and captured.err.count('\n') == 1
    assert captured.err.startswith('seg_tool: error: TensorRT needs cuda-python')


@pytest.fixture
def model(tiny_model: Path, tmp_path: Path) -> Path:
    """Return a private copy of the tiny model."""
    return Path(shutil.copy(tiny_model, tmp_path / 'tiny.onnx'))


@pytest.fixture
def gpu_stand_in(model: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[FakeCuda, list]:
    """Real TensorRT-RTX for lookup and building; stand-ins for the GPU runtime and CUDA."""
    cuda, deserialized = FakeCuda(), []
    module = rtx_without_gpu_runtime(model, deserialized)
    monkeypatch.setattr(tensorrt, 'import_runtime',
                        lambda name=None: (module, cuda.runtime()))
    monkeypatch.setattr(tensorrt, 'import_tensorrt', lambda name=None: module)
    return cuda, deserialized


def test_missing_engine_is_explained_not_built(model, gpu_stand_in, tmp_path):
    with pytest.raises(ModelLoadError, match=r'no TensorRT engine of .*tiny.onnx in .* '
                                             r'matches fp32, .*tensorrt_rtx'):
        TensorRTBackend(model, precision='fp32', engine_cache_dir=tmp_path / 'engines')
    assert not (tmp_path / 'engines').exists() or not list(
        (tmp_path / 'engines').glob('*.engine'))


def test_backend_builds_a_missing_engine_and_runs_it_with_buffers_per_shape(
        model, gpu_stand_in, tmp_path, camvid_rgb):
    cuda, deserialized = gpu_stand_in
    lines: list[str] = []
    backend = create_backend('tensorrt', model, options={'tensorrt': {
        'precision': 'fp32', 'engine_cache_dir': str(tmp_path / 'engines'),
        'build_engine_if_missing': True}}, log=lines.append)
    assert lines[0].startswith('no cached engine of tiny.onnx') and 'building' in lines[0]
    assert lines[-1].startswith('built fp32 engine of tiny.onnx with tensorrt_rtx')
    assert deserialized == [backend.engine_path.read_bytes()]
    assert (backend.name, backend.precision, backend.info.num_classes) == ('tensorrt', 'fp32', 11)
    reference = OnnxRuntimeBackend(model).infer(camvid_rgb, probabilities=True)

    result = backend.infer(camvid_rgb, confidence=False)
    np.testing.assert_array_equal(result.labels, reference.labels)
    assert result.confidence is None and result.probabilities is None
    assert len([call for call in cuda.calls if call[0] == 'malloc']) == 8
    copies = [call for call in cuda.calls if call[0] in ('h2d', 'd2h')]
    assert copies == [('h2d', 360 * 480 * 3), ('d2h', 360 * 480)]

    cuda.calls.clear()
    result = backend.infer(camvid_rgb, confidence=True, probabilities=True)
    np.testing.assert_allclose(result.confidence, reference.confidence, rtol=1e-6)
    np.testing.assert_allclose(result.probabilities, reference.probabilities, rtol=1e-6)
    assert [call[0] for call in cuda.calls] == ['h2d', 'd2h', 'd2h', 'd2h']

    cuda.calls.clear()
    small = np.ascontiguousarray(camvid_rgb[:240, :320])
    assert backend.infer(small, confidence=False).labels.shape == (240, 320)
    assert len(cuda.buffers) == 8 and [call[0] for call in cuda.calls].count('malloc') == 8
    with pytest.raises(ConfigError, match='outside the engine profile 1x240x320..1x360x480'):
        backend.infer(np.zeros((200, 320, 3), np.uint8))
    backend.close()
    assert cuda.buffers == {} and cuda.calls[-1] == ('destroy', 7)

    lines.clear()
    again = TensorRTBackend(model, precision='fp32', engine_cache_dir=tmp_path / 'engines',
                            log=lines.append)
    assert again.engine_path == backend.engine_path and lines == []


def test_engine_file_given_directly_is_checked_against_this_tensorrt(
        model, gpu_stand_in, tmp_path, monkeypatch):
    engine = tensorrt.build_engine(model, 'fp32', engine_dir=tmp_path, log=lambda line: None
                                   ).engine
    assert TensorRTBackend(engine).precision == 'fp32'
    sidecar_file = engine_cache.sidecar_path(engine)
    sidecar = json.loads(sidecar_file.read_text())
    sidecar_file.write_text(json.dumps(sidecar | {'tensorrt_module': 'tensorrt',
                                                  'tensorrt_version': '10.3.0'}))
    with pytest.raises(ModelLoadError, match="tensorrt_module: engine has 'tensorrt', "
                                             "expected 'tensorrt_rtx'; tensorrt_version"):
        TensorRTBackend(engine)


@pytest.fixture(scope='module')
def shipped_int8(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp('int8') / 'camvid_fast_fine_int8.onnx'
    quantize_model(DEFAULT_MODEL_PATH, path, calibration_images(CAMVID_FIXTURES, 'val', 2))
    return path


@needs_gpu
@pytest.mark.parametrize(('precision', 'minimum'), [('fp32', 0.999), ('fp16', 0.99)])
def test_tensorrt_labels_match_onnxruntime(engines, camvid_pairs, precision, minimum):
    backend = TensorRTBackend(DEFAULT_MODEL_PATH, precision=precision, engine_cache_dir=engines,
                              build_engine_if_missing=True)
    images = [image for image, _ in camvid_pairs]
    agreement, _ = label_agreement(OnnxRuntimeBackend(DEFAULT_MODEL_PATH), backend, images)
    assert agreement >= minimum, f'{precision}: {agreement:.5f}'


@needs_gpu
def test_int8_engine_labels_match_onnxruntime_on_the_qdq_model(shipped_int8, engines,
                                                               camvid_pairs):
    backend = TensorRTBackend(shipped_int8, precision='int8', engine_cache_dir=engines,
                              build_engine_if_missing=True)
    images = [image for image, _ in camvid_pairs]
    agreement, _ = label_agreement(OnnxRuntimeBackend(shipped_int8), backend, images)
    assert agreement >= 0.95, agreement
