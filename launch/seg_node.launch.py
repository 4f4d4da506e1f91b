"""Launch seg_node (and optionally RViz) with the shipped parameters and DDS profile."""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition, LaunchConfigurationNotEquals
from launch.substitutions import EnvironmentVariable, LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    """Return the launch description: args image, params_file, use_rviz, fastdds_profile."""
    share = FindPackageShare('seg_node')
    image = LaunchConfiguration('image')
    profile = LaunchConfiguration('fastdds_profile')
    return LaunchDescription([
        DeclareLaunchArgument('image', default_value='/camera/image_raw',
                              description='camera image topic (raw or its /compressed base)'),
        DeclareLaunchArgument('params_file',
                              default_value=PathJoinSubstitution([share, 'config',
                                                                  'seg_node.yaml']),
                              description='node parameters YAML'),
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
                               condition=LaunchConfigurationNotEquals('fastdds_profile',
                                                                      'none')),
        Node(package='seg_node', executable='seg_node', name='seg_node', output='screen',
             emulate_tty=True, parameters=[LaunchConfiguration('params_file')],
             remappings=[('image', image), ('image/compressed', [image, '/compressed'])]),
        Node(package='rviz2', executable='rviz2', name='rviz2',
             arguments=['-d', PathJoinSubstitution([share, 'config', 'seg_node.rviz'])],
             condition=IfCondition(LaunchConfiguration('use_rviz'))),
    ])
