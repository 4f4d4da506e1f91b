"""ament_python package definition of seg_node."""

from glob import glob

from setuptools import find_packages, setup

package_name = 'seg_node'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    package_data={'seg_node.models': ['*.onnx', '*.yaml'], 'seg_node': ['sample/*/*.png']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        ('share/' + package_name + '/launch', glob('launch/*.launch.py')),
        ('share/' + package_name + '/config', glob('config/*')),
    ],
    # What the node imports (ROS packages come from package.xml); seg_tool's other commands
    # need their extra: bags (make-bag, eval-bag, score-live), train (train, export,
    # quantize, calibrate-bias, evaluate of checkpoints), tensorrt (GPU inference, engines).
    install_requires=['numpy', 'onnxruntime', 'opencv-python-headless', 'pyyaml'],
    extras_require={
        'bags': ['rosbags', 'tqdm'],
        'train': ['torch', 'onnx', 'tqdm'],
        # tensorrt 10.x (JetPack 6) or 11.x; TensorRT-RTX (tensorrt-rtx-cu12) works as well
        'tensorrt': ['tensorrt>=10,<12', 'cuda-python>=12.6.1'],
        # eval-fleet: eval-bag's path on Ray workers, HTML report with matplotlib figures
        'fleet': ['ray>=2.60', 'matplotlib>=3.11', 'rosbags', 'tqdm'],
    },
    zip_safe=True,
    maintainer='seg_node developers',
    maintainer_email='seg-node@example.com',
    description='Camera semantic segmentation node (encoder-decoder, ONNX Runtime/TensorRT)',
    license='Apache-2.0',
    tests_require=['pytest'],
    entry_points={
        'console_scripts': [
            'seg_node = seg_node.ros.node:main',
            'seg_tool = seg_node.tools.cli.main:main',
        ],
    },
)
