"""seg_node: camera semantic segmentation for ROS 2."""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
MODELS_DIR = PACKAGE_DIR / 'models'
FASTDDS_PROFILE_NAME = 'fastdds_large_frames.xml'
# The camera topic that bags, demos and benchmarks use by default.
CAMERA_TOPIC = '/camera/image_raw'


def config_file(name: str) -> Path:
    """Return a file shipped in ``config/``: the source tree's, else the installed share one."""
    source = PACKAGE_DIR.parent / 'config' / name
    if source.exists():
        return source
    from ament_index_python.packages import get_package_share_directory
    return Path(get_package_share_directory('seg_node')) / 'config' / name
