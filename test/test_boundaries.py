"""Layer boundaries: what the serving core, the ROS shell and the node process may import.

The core (codec, pipeline, render, backends) is what the node and the offline tools share,
so it must stay light: no ROS, no training framework, no tooling libraries. The node
process must start from the packages rosdep installs (see test_packaging.py).
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / 'seg_node'
CORE_FORBIDDEN = {'rclpy', 'torch', 'rosbags', 'ray', 'matplotlib', 'onnx'}
ROS_FORBIDDEN = {'torch', 'rosbags', 'ray'}
NODE_PROCESS_FORBIDDEN = {'torch', 'onnx', 'rosbags', 'tqdm', 'ray', 'matplotlib'}


def module_name(path: Path) -> str:
    """Return the dotted module name of a file under the repository root."""
    parts = path.relative_to(ROOT).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def imported_modules(path: Path) -> set[str]:
    """Return every module a file imports, at any depth (function-level imports too).

    Relative imports are resolved against the file's package.
    """
    package = module_name(path).split('.')
    if path.name != '__init__.py':
        package = package[:-1]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = '.'.join(base + ([node.module] if node.module else []))
            names.add(module)
            names.update(f'{module}.{alias.name}' for alias in node.names)
    return names


def top_level(modules: set[str]) -> set[str]:
    return {name.split('.')[0] for name in modules}


def python_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob('*.py'))


def test_the_import_scan_sees_function_level_and_relative_imports(tmp_path, monkeypatch):
    package = tmp_path / 'pkg'
    package.mkdir()
    (package / '__init__.py').write_text('')
    source = package / 'mod.py'
    source.write_text('import os\n\ndef f():\n    import torch.nn\n    from . import sibling\n'
                      '    from .sub import thing\n')
    monkeypatch.setattr(sys.modules[__name__], 'ROOT', tmp_path)
    assert imported_modules(source) == {
        'os', 'torch.nn', 'pkg', 'pkg.sibling', 'pkg.sub', 'pkg.sub.thing'}


@pytest.mark.parametrize('path', python_files(PACKAGE / 'core'), ids=lambda p: p.name)
def test_the_core_imports_no_ros_training_or_tooling_library(path):
    assert not top_level(imported_modules(path)) & CORE_FORBIDDEN
    assert not {m for m in imported_modules(path)
                if m.startswith(('seg_node.ros', 'seg_node.tools', 'seg_node.training'))}


@pytest.mark.parametrize('path', python_files(PACKAGE / 'ros'), ids=lambda p: p.name)
def test_the_ros_shell_imports_no_training_or_bag_library(path):
    assert not top_level(imported_modules(path)) & ROS_FORBIDDEN
    assert not {m for m in imported_modules(path) if m.startswith('seg_node.tools')}


def test_only_the_tools_import_the_tools():
    outside = [path for path in python_files(PACKAGE)
               if PACKAGE / 'tools' not in path.parents]
    assert len(outside) > 20
    importers = [path.relative_to(ROOT) for path in outside
                 if any(m == 'seg_node.tools' or m.startswith('seg_node.tools.')
                        for m in imported_modules(path))]
    assert importers == []


def _loaded_modules(code: str) -> set[str]:
    """Run ``code`` in a fresh interpreter and return the top-level modules it loaded."""
    result = subprocess.run(
        [sys.executable, '-c', code + '\nimport json, sys\n'
         'print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))'],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_importing_every_core_module_loads_no_forbidden_library():
    modules = [module_name(path) for path in python_files(PACKAGE / 'core')]
    loaded = _loaded_modules('\n'.join(f'import {name}' for name in modules))
    assert 'cv2' in loaded and 'numpy' in loaded
    assert not loaded & CORE_FORBIDDEN


def test_the_node_process_with_its_model_loaded_loads_no_tooling_library():
    loaded = _loaded_modules(
        'import seg_node.ros.node\n'
        'from seg_node.core.pipeline import load_segmenter\n'
        'from seg_node.models import DEFAULT_MODEL_PATH\n'
        'segmenter, _ = load_segmenter(DEFAULT_MODEL_PATH, backend="onnxruntime", threads=1)\n'
        'assert segmenter.backend.name == "onnxruntime"')
    assert {'rclpy', 'onnxruntime', 'cv2'} <= loaded
    assert not loaded & NODE_PROCESS_FORBIDDEN
