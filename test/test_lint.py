"""The linters ROS runs (flake8 with pep257 docstrings) and ruff, as tests that can fail."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ['seg_node', 'test', 'launch', 'scripts', 'setup.py']


def run(tool: str, *args: str) -> subprocess.CompletedProcess:
    executable = shutil.which(tool, path=str(Path(sys.executable).parent))
    if executable is None:
        pytest.fail(f'{tool} is not installed in {Path(sys.executable).parent}')
    return subprocess.run([executable, *args], cwd=ROOT, capture_output=True, text=True)


def test_flake8_pep257():
    result = run('flake8', *SOURCES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff():
    result = run('ruff', 'check', *SOURCES)
    assert result.returncode == 0, result.stdout + result.stderr
