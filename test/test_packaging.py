"""Packaging: package.xml resolves with rosdep; setup.py's requirements are what is imported.

The rosdep lists (``shared/rosdep/jazzy_packages.txt``: ROS 2 Jazzy package names;
``keys.txt``: every key of rosdistro's base.yaml and python.yaml) sit in a ``shared``
folder beside the repository (``../shared/rosdep`` in CI) or higher up.
"""

import ast
import re
import sys
import xml.etree.ElementTree as ElementTree
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

from test_boundaries import imported_modules, PACKAGE, python_files, ROOT, top_level

# PyPI distribution of a runtime requirement -> the rosdep key that installs it on the car.
ROSDEP_KEYS = {'numpy': 'python3-numpy', 'opencv-python-headless': 'python3-opencv',
               'pyyaml': 'python3-yaml', 'onnxruntime': 'python3-onnxruntime-pip'}
# Import names of distributions that are not installed on every development machine.
OPTIONAL_DISTRIBUTIONS = {'tensorrt': 'tensorrt', 'cuda': 'cuda-python'}


def rosdep_lists() -> Path | None:
    """Return the nearest ``shared/rosdep`` folder above the repository, or None."""
    for folder in ROOT.parents:
        if (folder / 'shared' / 'rosdep' / 'keys.txt').is_file():
            return folder / 'shared' / 'rosdep'
    return None


def read_list(path: Path) -> set[str]:
    return {line.strip() for line in path.read_text().splitlines()
            if line.strip() and not line.startswith('#')}


def package_dependencies() -> dict[str, list[str]]:
    """Return package.xml's dependencies by tag (exec_depend, test_depend, ...)."""
    dependencies: dict[str, list[str]] = {}
    for element in ElementTree.parse(ROOT / 'package.xml').getroot():
        if element.tag.endswith('depend'):
            dependencies.setdefault(element.tag, []).append(element.text.strip())
    return dependencies


def setup_requirements() -> tuple[set[str], dict[str, set[str]]]:
    """Return setup.py's install_requires and extras_require, as distribution names."""
    tree = ast.parse((ROOT / 'setup.py').read_text())
    call = next(node for node in ast.walk(tree)
                if isinstance(node, ast.Call) and getattr(node.func, 'id', None) == 'setup')
    keywords = {k.arg: ast.literal_eval(k.value) for k in call.keywords
                if k.arg in ('install_requires', 'extras_require')}

    def names(requirements: list[str]) -> set[str]:
        return {re.split(r'[<>=!~\[; ]', r, maxsplit=1)[0].lower() for r in requirements}
    return (names(keywords['install_requires']),
            {extra: names(reqs) for extra, reqs in keywords['extras_require'].items()})


def distributions(modules: set[str]) -> set[str]:
    """Map third-party top-level import names to their (lower-case) distributions.

    ROS packages (the ``ros-*`` wheels here; the ROS install on the car) are left out:
    package.xml, not setup.py, names them. seg_node imports no sub-package of a namespace
    that another distribution adds to (it uses rosbags, not rosbags.image).
    """
    installed = packages_distributions()
    found = set()
    for name in top_level(modules) - set(sys.stdlib_module_names) - {'seg_node', 'test'}:
        dists = [d.lower() for d in installed.get(name) or [OPTIONAL_DISTRIBUTIONS[name]]]
        if any(d.startswith('ros-') for d in dists):
            continue
        # a namespace several distributions install into (rosbags, rosbags-image): its own
        found.update([name] if name in dists else dists)
    return found


@pytest.fixture(scope='module')
def rosdep_names() -> tuple[set[str], set[str]]:
    folder = rosdep_lists()
    if folder is None:
        pytest.skip('no shared/rosdep folder beside the repository (jazzy_packages.txt, '
                    'keys.txt): nothing to check package.xml against')
    return read_list(folder / 'jazzy_packages.txt'), read_list(folder / 'keys.txt')


def test_every_package_xml_dependency_is_a_ros_package_or_rosdep_key(rosdep_names):
    ros_packages, keys = rosdep_names
    assert 'rclpy' in ros_packages and 'python3-numpy' in keys
    dependencies = [name for names in package_dependencies().values() for name in names]
    assert len(dependencies) > 10
    assert [name for name in dependencies if name not in ros_packages | keys] == []


def test_the_rosdep_check_catches_a_key_rosdep_does_not_know(rosdep_names):
    ros_packages, keys = rosdep_names
    assert 'python3-onnx-pip' not in ros_packages | keys


def test_install_requires_is_what_the_node_and_core_import():
    serving = python_files(PACKAGE / 'core') + python_files(PACKAGE / 'ros')
    modules = set().union(*(imported_modules(path) for path in serving
                            if path.name != 'tensorrt.py'))
    install_requires, _ = setup_requirements()
    assert distributions(modules) == install_requires


def test_every_runtime_requirement_has_its_rosdep_key_in_package_xml():
    install_requires, _ = setup_requirements()
    exec_depends = set(package_dependencies()['exec_depend'])
    assert {ROSDEP_KEYS[name] for name in install_requires} == \
        {name for name in exec_depends if name.startswith('python3-')}


def test_every_ros_package_the_node_imports_is_an_exec_depend():
    installed = packages_distributions()
    serving = python_files(PACKAGE / 'core') + python_files(PACKAGE / 'ros')
    imported = top_level(set().union(*(imported_modules(path) for path in serving)))
    ros = {name for name in imported
           if any(d.lower().startswith('ros-') for d in installed.get(name, []))}
    assert {'rclpy', 'sensor_msgs'} <= ros
    assert ros <= set(package_dependencies()['exec_depend'])


def test_every_third_party_import_is_a_requirement_or_an_extra():
    install_requires, extras = setup_requirements()
    assert {'bags', 'train', 'tensorrt'} <= set(extras)
    allowed = install_requires.union(*extras.values())
    for path in python_files(PACKAGE):
        missing = distributions(imported_modules(path)) - allowed
        assert not missing, f'{path.relative_to(ROOT)} imports {missing}'


def test_extras_hold_the_tooling_libraries():
    install_requires, extras = setup_requirements()
    assert {'rosbags', 'tqdm'} <= extras['bags']
    assert {'torch', 'onnx'} <= extras['train']
    assert not install_requires & {'torch', 'onnx', 'rosbags', 'tqdm', 'tensorrt'}
