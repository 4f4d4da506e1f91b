"""seg_node: camera semantic segmentation for ROS 2."""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
MODELS_DIR = PACKAGE_DIR / 'models'
