"""Shared fixtures: an isolated ROS domain, a tiny exported model and CamVid fixtures."""

import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

# Isolate every test run's DDS traffic before rclpy is imported anywhere.
os.environ.setdefault('ROS_DOMAIN_ID', str(random.randint(1, 200)))
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'

FIXTURES = Path(__file__).parent / 'fixtures'
CAMVID_FIXTURES = FIXTURES / 'camvid'


@pytest.fixture(scope='session')
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Export a randomly initialised `fast` network (seeded) to the ONNX contract."""
    torch = pytest.importorskip('torch')
    from seg_node.core.classes import load_classes
    from seg_node.models.architectures import build_model
    from seg_node.models.deploy import DeployModel
    from seg_node.training.export import export_onnx
    torch.manual_seed(0)
    classes = load_classes()
    network = build_model('fast', classes.num_classes).eval()
    model = DeployModel(network, (0.4, 0.4, 0.4), (0.3, 0.3, 0.3))
    path = tmp_path_factory.mktemp('model') / 'tiny.onnx'
    return export_onnx(model, path, classes.names, (360, 480), 'fast')


@pytest.fixture(scope='session')
def camvid_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    """Return the real CamVid (image, label) fixtures: (H, W, 3) uint8 RGB, (H, W) uint8."""
    from seg_node.evaluation.dataset import load_split
    data = load_split(CAMVID_FIXTURES, 'val')
    return list(zip(data.images, data.labels, strict=True))


@pytest.fixture(scope='session')
def camvid_rgb(camvid_pairs: list) -> np.ndarray:
    """Return one real CamVid frame, (360, 480, 3) uint8 RGB."""
    return camvid_pairs[0][0]


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``condition`` until true or ``timeout`` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


@pytest.fixture
def ros_context() -> Iterator[object]:
    """Initialise rclpy for one test and spin added nodes on a background executor."""
    import rclpy
    from rclpy.executors import MultiThreadedExecutor

    class Harness:
        def __init__(self) -> None:
            self.context = rclpy.Context()
            rclpy.init(context=self.context)
            self.executor = MultiThreadedExecutor(num_threads=2, context=self.context)
            self.nodes: list = []
            self.thread = threading.Thread(target=self._spin, daemon=True)
            self.thread.start()

        def _spin(self) -> None:
            while self.context.ok():
                try:
                    self.executor.spin_once(timeout_sec=0.05)
                except Exception:  # shutdown races end the loop
                    return

        def add(self, node: object) -> object:
            self.nodes.append(node)
            self.executor.add_node(node)
            return node

        def close(self) -> None:
            for node in self.nodes:
                close = getattr(node, 'close', node.destroy_node)
                close()
            rclpy.shutdown(context=self.context)
            self.thread.join(timeout=5)

    harness = Harness()
    yield harness
    harness.close()
