"""Engine cache keys, folder, lookups and mismatch messages, with plain key values (no GPU)."""

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from seg_node.core.errors import ConfigError, ModelLoadError
from seg_node.core.inference import engine_cache
from seg_node.core.inference.engine_cache import EngineKey, Profile

ENGINE_BYTES = b'\x00serialized engine\xff' * 64
METADATA = {'class_names': '["a", "b"]', 'inference_size': '360x480', 'arch': 'fast'}


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / 'net.onnx'
    path.write_bytes(b'fake onnx bytes')
    return path


@pytest.fixture
def engines(tmp_path: Path) -> Path:
    """Return an engine folder apart from the model's."""
    return tmp_path / 'cache' / 'engines'


@pytest.fixture
def key(model: Path) -> EngineKey:
    return EngineKey(onnx_sha256=engine_cache.file_sha256(model), tensorrt_module='tensorrt',
                     tensorrt_version='10.3.0',
                     device_name='NVIDIA Orin', compute_capability='8.7', precision='fp16',
                     profile=engine_cache.profile_from_shapes(None, None, None, (360, 480)))


def test_parse_shape_accepts_hw_and_nhw_and_rejects_the_rest():
    assert engine_cache.parse_shape('360x480') == (1, 360, 480)
    assert engine_cache.parse_shape('1X256X320') == (1, 256, 320)
    for text in ('360', '0x480', 'axb', '1x2x3x4', ''):
        with pytest.raises(ConfigError, match='HxW or NxHxW'):
            engine_cache.parse_shape(text)


def test_profile_defaults_to_opt_and_validates_order_and_batch():
    profile = engine_cache.profile_from_shapes('240x320', None, '720x960', (360, 480))
    assert (profile.min, profile.opt, profile.max) == ((1, 240, 320), (1, 360, 480),
                                                       (1, 720, 960))
    assert profile.contains((1, 300, 400)) and not profile.contains((1, 200, 400))
    assert profile.describe() == 'min 1x240x320 opt 1x360x480 max 1x720x960'
    fixed = engine_cache.profile_from_shapes(None, '256x320', None, (360, 480))
    assert fixed.min == fixed.opt == fixed.max == (1, 256, 320)
    with pytest.raises(ConfigError, match='min <= opt <= max'):
        engine_cache.profile_from_shapes('400x480', None, None, (360, 480))
    with pytest.raises(ConfigError, match='batch size N must be 1'):
        Profile((1, 360, 480), (2, 360, 480), (2, 360, 480))


def test_key_digest_is_deterministic_and_changes_with_every_field(key: EngineKey):
    assert key.digest() == dataclasses.replace(key).digest()
    assert list(key.fields()) == list(engine_cache.KEY_FIELDS)
    assert key.fields()['profile'] == {'min': [1, 360, 480], 'opt': [1, 360, 480],
                                       'max': [1, 360, 480]}
    changes = {'onnx_sha256': '0' * 64, 'tensorrt_module': 'tensorrt_rtx',
               'tensorrt_version': '10.4.0',
               'device_name': 'NVIDIA H100', 'compute_capability': '9.0', 'precision': 'int8',
               'profile': Profile((1, 240, 320), (1, 360, 480), (1, 360, 480))}
    digests = {dataclasses.replace(key, **{field: value}).digest()
               for field, value in changes.items()}
    assert len(digests | {key.digest()}) == len(changes) + 1
    with pytest.raises(ConfigError, match='precision'):
        dataclasses.replace(key, precision='int4')


def test_onnx_hash_follows_the_file_bytes(model: Path):
    assert engine_cache.file_sha256(model) == hashlib.sha256(b'fake onnx bytes').hexdigest()
    model.write_bytes(b'retrained onnx bytes')
    assert engine_cache.file_sha256(model) == hashlib.sha256(b'retrained onnx bytes').hexdigest()


def test_default_engine_dir_follows_ros_home_then_xdg_cache_then_dot_ros(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv('ROS_HOME', str(tmp_path / 'ros'))
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
    assert engine_cache.default_engine_dir() == tmp_path / 'ros' / 'seg_node' / 'engines'
    monkeypatch.delenv('ROS_HOME')
    assert engine_cache.default_engine_dir() == tmp_path / 'xdg' / 'seg_node' / 'engines'
    monkeypatch.delenv('XDG_CACHE_HOME')
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    assert engine_cache.default_engine_dir() == (tmp_path / 'home' / '.ros' / 'seg_node'
                                                 / 'engines')


def test_engine_path_is_deterministic_and_in_the_engine_folder(model: Path, key: EngineKey,
                                                               engines: Path):
    path = engine_cache.engine_path(engines, model, key)
    assert path.parent == engines
    assert path.name == f'net.fp16.{key.digest()[:16]}.engine'
    assert engine_cache.sidecar_path(path).name == path.name + '.json'


def test_write_then_find_and_read_returns_the_engine_and_sidecar(model: Path, key: EngineKey,
                                                                 engines: Path):
    assert engine_cache.find_engine(engines, model, key) is None
    written = engine_cache.write_engine(engines, model, key, ENGINE_BYTES, METADATA)
    assert engine_cache.find_engine(engines, model, key) == written
    data, sidecar = engine_cache.read_engine(written, key.fields())
    assert data == ENGINE_BYTES
    assert sidecar['metadata'] == METADATA
    assert sidecar['onnx_file'] == 'net.onnx'
    assert {name: sidecar[name] for name in engine_cache.KEY_FIELDS} == key.fields()
    assert sorted(p.name for p in engines.iterdir()) == sorted(
        [written.name, written.name + '.json'])
    assert sorted(p.name for p in model.parent.iterdir()) == ['cache', 'net.onnx']


def test_a_changed_model_or_request_finds_no_engine(model: Path, key: EngineKey,
                                                    engines: Path):
    engine_cache.write_engine(engines, model, key, ENGINE_BYTES, METADATA)
    model.write_bytes(b'retrained onnx bytes')
    stale = dataclasses.replace(key, onnx_sha256=engine_cache.file_sha256(model))
    assert engine_cache.find_engine(engines, model, stale) is None
    fp32 = dataclasses.replace(key, precision='fp32')
    assert engine_cache.find_engine(engines, model, fp32) is None


def test_tampered_sidecar_is_refused_naming_the_field(model: Path, key: EngineKey,
                                                      engines: Path):
    written = engine_cache.write_engine(engines, model, key, ENGINE_BYTES, METADATA)
    sidecar_file = engine_cache.sidecar_path(written)
    sidecar = json.loads(sidecar_file.read_text())
    sidecar['tensorrt_version'] = '10.0.1'
    sidecar_file.write_text(json.dumps(sidecar))
    with pytest.raises(ModelLoadError, match=r"tensorrt_version: engine has '10\.0\.1', "
                                             r"expected '10\.3\.0'"):
        engine_cache.find_engine(engines, model, key)
    with pytest.raises(ModelLoadError, match='tensorrt_version'):
        engine_cache.read_engine(written, key.fields())


def test_replaced_engine_bytes_are_refused(model: Path, key: EngineKey,
                                           engines: Path):
    written = engine_cache.write_engine(engines, model, key, ENGINE_BYTES, METADATA)
    written.write_bytes(ENGINE_BYTES[:100])
    with pytest.raises(ModelLoadError, match='engine_sha256 differs'):
        engine_cache.read_engine(written, key.fields())


def test_engine_without_or_with_broken_sidecar_is_refused(tmp_path: Path, key: EngineKey):
    engine = tmp_path / 'orphan.engine'
    engine.write_bytes(ENGINE_BYTES)
    with pytest.raises(ModelLoadError, match='has no sidecar orphan.engine.json'):
        engine_cache.read_engine(engine, key.fields())
    engine_cache.sidecar_path(engine).write_text('[1, 2]')
    with pytest.raises(ModelLoadError, match='not a JSON object'):
        engine_cache.read_engine(engine, key.fields())
    engine_cache.sidecar_path(engine).write_text('{broken')
    with pytest.raises(ModelLoadError, match='cannot read engine sidecar'):
        engine_cache.read_engine(engine, key.fields())


def test_direct_engine_check_compares_only_the_environment(model: Path, key: EngineKey,
                                                           engines: Path):
    written = engine_cache.write_engine(engines, model, key, ENGINE_BYTES, METADATA)
    here = {'tensorrt_module': 'tensorrt', 'tensorrt_version': '10.3.0',
            'device_name': 'NVIDIA Orin',
            'compute_capability': '8.7'}
    data, sidecar = engine_cache.read_engine(written, here, engine_cache.ENVIRONMENT_FIELDS)
    assert data == ENGINE_BYTES and sidecar['precision'] == 'fp16'
    other_gpu = here | {'device_name': 'NVIDIA H100', 'compute_capability': '9.0'}
    with pytest.raises(ModelLoadError) as error:
        engine_cache.read_engine(written, other_gpu, engine_cache.ENVIRONMENT_FIELDS)
    message = str(error.value)
    assert "device_name: engine has 'NVIDIA Orin', expected 'NVIDIA H100'" in message
    assert "compute_capability: engine has '8.7', expected '9.0'" in message
    assert 'tensorrt_version' not in message


def test_explain_missing_names_the_differing_fields_of_each_engine(
        model: Path, key: EngineKey, engines: Path):
    assert 'no engine was built for it yet' in engine_cache.explain_missing(engines, model, key)
    fp32 = dataclasses.replace(key, precision='fp32')
    written = engine_cache.write_engine(engines, model, fp32, ENGINE_BYTES, METADATA)
    other_model = model.with_name('net.v2.onnx')
    other_model.write_bytes(b'another model')
    engine_cache.write_engine(engines, other_model, key, ENGINE_BYTES, METADATA)
    message = engine_cache.explain_missing(engines, model, key)
    assert f"{written.name} differs in precision: engine has 'fp32', expected 'fp16'" in message
    assert 'net.v2' not in message
    assert f'--engine-dir {engines}' in message and 'build_engine_if_missing' in message
    assert '\n' not in message
