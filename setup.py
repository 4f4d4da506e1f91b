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
    install_requires=['setuptools', 'numpy', 'onnx', 'onnxruntime', 'opencv-python-headless',
                      'pyyaml', 'rosbags', 'rosbags-image', 'tqdm'],
    extras_require={
        'train': ['torch'],
        'tensorrt': ['tensorrt>=10,<11', 'cuda-python>=12.6.1'],
        'fleet': ['ray>=2.60', 'matplotlib>=3.11'],
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
