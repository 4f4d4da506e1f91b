"""Static checks of the launch file, RViz config, parameters YAML and package metadata.

`launch`, `launch_ros` and rviz2 are not installable here, so these tests read the files
and compare them with what the real node declares and publishes.
"""

import ast
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
import yaml
from rclpy.parameter import Parameter

from conftest import wait_for
from seg_node.ros.node import SegNode

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILE = ROOT / 'launch' / 'seg_node.launch.py'


def keyword_calls(tree: ast.AST, function: str) -> list[dict[str, ast.AST]]:
    """Return the keyword arguments of every call to ``function`` in ``tree``."""
    return [{k.arg: k.value for k in node.keywords} for node in ast.walk(tree)
            if isinstance(node, ast.Call) and getattr(node.func, 'id', None) == function]


@pytest.fixture
def node(ros_context, tiny_model):
    node = ros_context.add(SegNode(context=ros_context.context, parameter_overrides=[
        Parameter('model', value=str(tiny_model))]))
    assert wait_for(lambda: node.lifecycle_state() == 'active', 30)
    return node


def console_scripts() -> dict[str, str]:
    text = (ROOT / 'setup.py').read_text()
    return dict(re.findall(r"'(\w+) = ([\w.:]+)'", text))


def test_launch_file_names_existing_package_executable_and_arguments():
    tree = ast.parse(LAUNCH_FILE.read_text())
    package_name = ElementTree.parse(ROOT / 'package.xml').getroot().findtext('name')
    nodes = [call for call in keyword_calls(tree, 'Node')
             if ast.literal_eval(call['package']) == package_name]
    assert len(nodes) == 1
    executable = ast.literal_eval(nodes[0]['executable'])
    assert executable in console_scripts()
    module, function = console_scripts()[executable].split(':')
    assert callable(getattr(__import__(module, fromlist=[function]), function))
    arguments = {ast.literal_eval(call.args[0]) for call in ast.walk(tree)
                 if isinstance(call, ast.Call)
                 and getattr(call.func, 'id', None) == 'DeclareLaunchArgument'}
    assert {'image', 'cameras', 'params_file', 'autostart', 'use_rviz',
            'fastdds_profile'} <= arguments
    used = {ast.literal_eval(call.args[0]) for call in ast.walk(tree)
            if isinstance(call, ast.Call)
            and getattr(call.func, 'id', None) == 'LaunchConfiguration'}
    assert used <= arguments
    shared = set(re.findall(r"\[share, '(\w+)', '([\w.]+)'\]", LAUNCH_FILE.read_text()))
    assert shared and all((ROOT / folder / name).is_file() for folder, name in shared)


def test_launch_file_uses_no_deprecated_launch_names():
    deprecated = {'LaunchConfigurationEquals', 'LaunchConfigurationNotEquals'}
    names = {node.id for node in ast.walk(ast.parse(LAUNCH_FILE.read_text()))
             if isinstance(node, ast.Name)} | {
        alias.name for node in ast.walk(ast.parse(LAUNCH_FILE.read_text()))
        if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert not names & deprecated and 'NotEqualsSubstitution' in names


def launch_function(name: str):
    """Compile one function of the launch file on its own (launch is not installable here)."""
    tree = ast.parse(LAUNCH_FILE.read_text())
    function = next(node for node in tree.body
                    if isinstance(node, ast.FunctionDef) and node.name == name)
    namespace = {'yaml': yaml}
    exec(compile(ast.Module([function], []), str(LAUNCH_FILE), 'exec'), namespace)
    return namespace[name]


def test_launch_cameras_argument_is_a_list_of_camera_names(ros_context, tiny_model):
    camera_list = launch_function('camera_list')
    assert camera_list('') == camera_list('[]') == []
    assert camera_list('[front, rear/left]') == ['front', 'rear/left']
    for bad in ('front', '[1, 2]', "['']"):
        with pytest.raises(ValueError, match='give a YAML list of camera names'):
            camera_list(bad)
    node = ros_context.add(SegNode(context=ros_context.context, parameter_overrides=[
        Parameter('model', value=str(tiny_model)),
        Parameter('cameras', value=camera_list('[front, rear/left]'))]))
    assert node.settings.cameras == ('front', 'rear/left')


def test_launch_passes_autostart_and_cameras_and_remaps_only_image(node):
    source = LAUNCH_FILE.read_text()
    tree = ast.parse(source)
    overrides = {key.value for call in ast.walk(tree) if isinstance(call, ast.Dict)
                 for key in call.keys if isinstance(key, ast.Constant)}
    overrides |= set(re.findall(r"overrides\['(\w+)'\]", source))
    assert overrides == {'autostart', 'cameras'}
    assert node.has_parameter('autostart')
    remappings = [call['remappings'] for call in keyword_calls(tree, 'Node')
                  if 'remappings' in call]
    assert len(remappings) == 1
    assert [ast.literal_eval(pair.elts[0]) for pair in remappings[0].elts] == ['image']


def test_params_file_sets_only_declared_parameters(node):
    document = yaml.safe_load((ROOT / 'config' / 'seg_node.yaml').read_text())
    parameters = document['seg_node']['ros__parameters']
    declared = set(node._parameters) - {'use_sim_time', 'start_type_description_service'}
    assert set(parameters) == declared
    for name, value in parameters.items():
        assert type(value) is type(node.get_parameter(name).value) or name in (
            'model', 'classes'), name


def test_rviz_topics_are_published_by_the_node(node):
    document = yaml.safe_load((ROOT / 'config' / 'seg_node.rviz').read_text())
    displays = document['Visualization Manager']['Displays']
    topics = {display['Topic']['Value'] for display in displays}
    published = {publisher.topic_name for publisher in node.publishers}
    camera = {'/camera/image_raw'}
    assert {'/seg_node/overlay', '/seg_node/color',
            '/seg_node/class_confidence/road'} <= topics
    assert topics - camera <= published
    for display in displays:
        if display['Topic']['Value'] in published:
            assert display['Topic']['Reliability Policy'] == 'Reliable'


def test_package_xml_and_setup_agree():
    root = ElementTree.parse(ROOT / 'package.xml').getroot()
    assert root.get('format') == '3'
    assert root.findtext('export/build_type') == 'ament_python'
    depends = {element.text for element in root.iter('exec_depend')}
    assert {'rclpy', 'sensor_msgs', 'std_msgs', 'diagnostic_msgs', 'lifecycle_msgs'} <= depends
    assert (ROOT / 'resource' / 'seg_node').exists()
    assert set(console_scripts()) == {'seg_node', 'seg_tool'}
