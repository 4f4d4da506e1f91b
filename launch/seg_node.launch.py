"""Launch seg_node (and optionally RViz) with the shipped parameters and DDS profile."""

import yaml
from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import (EnvironmentVariable, LaunchConfiguration,
                                  NotEqualsSubstitution, PathJoinSubstitution)
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def camera_list(text: str) -> list[str]:
    """Parse the ``cameras`` argument: a YAML list of camera names, '' or '[]' for none.

    Camera ``front`` reads ``front/image`` and publishes ``~/front/labels``, ...; the node
    checks the names.

    Raises:
        ValueError: not a list of non-empty names.

    """
    cameras = yaml.safe_load(text) if text.strip() else []
    if not isinstance(cameras, list) or not all(
            isinstance(name, str) and name for name in cameras):
        raise ValueError(f'cameras:={text!r} is invalid; give a YAML list of camera names, '
                         'e.g. cameras:="[front, left]" (each reads <name>/image)')
    return cameras


def seg_node(context: LaunchContext) -> list[Node]:
    """Return the seg_node action; ``cameras`` becomes a parameter only when given."""
    overrides: dict[str, object] = {
        'autostart': LaunchConfiguration('autostart').perform(context).lower() == 'true'}
    cameras = camera_list(LaunchConfiguration('cameras').perform(context))
    if cameras:  # launch cannot pass an empty list (its type would be unknown)
        overrides['cameras'] = cameras
    return [Node(package='seg_node', executable='seg_node', name='seg_node', output='screen',
                 emulate_tty=True,
                 parameters=[LaunchConfiguration('params_file'), overrides],
                 remappings=[('image', LaunchConfiguration('image'))])]


def generate_launch_description() -> LaunchDescription:
    """Return the launch description.

    Arguments: image, cameras, params_file, autostart, use_rviz, fastdds_profile.
    """
    share = FindPackageShare('seg_node')
    profile = LaunchConfiguration('fastdds_profile')
    return LaunchDescription([
        DeclareLaunchArgument('image', default_value='/camera/image_raw',
                              description='camera image topic; with image_transport '
                                          'compressed the node subscribes <image>/compressed'),
        DeclareLaunchArgument('cameras', default_value='',
                              description='camera names as a YAML list, e.g. "[front, left]": '
                                          'each reads <name>/image (remap it to the driver) '
                                          "and publishes ~/<name>/labels, ...; passed as the "
                                          "node's cameras parameter; empty: the single "
                                          'camera on image'),
        DeclareLaunchArgument('params_file',
                              default_value=PathJoinSubstitution([share, 'config',
                                                                  'seg_node.yaml']),
                              description='node parameters YAML'),
        DeclareLaunchArgument('autostart', default_value='true',
                              choices=['true', 'false'],
                              description='true: the node configures and activates itself; '
                                          'false: it stays unconfigured for a lifecycle '
                                          'manager (ros2 lifecycle set /seg_node configure)'),
        DeclareLaunchArgument('use_rviz', default_value='false',
                              description='also start RViz with config/seg_node.rviz'),
        DeclareLaunchArgument(
            'fastdds_profile',
            default_value=EnvironmentVariable(
                'FASTDDS_DEFAULT_PROFILES_FILE',
                default_value=PathJoinSubstitution([share, 'config',
                                                    'fastdds_large_frames.xml'])),
            description='Fast DDS profile XML exported to the node ("none": keep the '
                        'environment as it is); defaults to $FASTDDS_DEFAULT_PROFILES_FILE '
                        'if set, else the shipped large-frame profile'),
        SetEnvironmentVariable('FASTDDS_DEFAULT_PROFILES_FILE', profile,
                               condition=IfCondition(NotEqualsSubstitution(profile, 'none'))),
        OpaqueFunction(function=seg_node),
        Node(package='rviz2', executable='rviz2', name='rviz2',
             arguments=['-d', PathJoinSubstitution([share, 'config', 'seg_node.rviz'])],
             condition=IfCondition(LaunchConfiguration('use_rviz'))),
    ])
