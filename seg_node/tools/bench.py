"""`seg_tool bench`: latency benchmarks with JSON output, measured side by side in one run.

- ``e2e`` (default): for each frame, the bare backend call and the full ROS 2 path (publish
  a 360x480 frame -> seg_node process -> ``~/labels`` received) are timed back to back.
- ``backends``: the same frames through each requested backend, interleaved per frame.
"""

import os
import platform
import time
from pathlib import Path

import numpy as np

from seg_node.evaluation.dataset import load_split
from seg_node.evaluation.scoring import latency_percentiles
from seg_node.core.inference.base import Backend, create_backend
from seg_node.tools.ros_client import PROFILE_VARIABLE, sample_dir, serving_node

WARMUP = 5


def cpu_name(cpuinfo: Path = Path('/proc/cpuinfo')) -> str:
    """Return the CPU's model name (Linux), else what the platform module knows."""
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith('model name') and ':' in line:
                return line.split(':', 1)[1].strip()
    return platform.processor() or platform.machine()


def machine() -> dict:
    """Describe the machine the numbers come from."""
    return {'cpu': cpu_name(), 'cores': os.cpu_count(), 'python': platform.python_version()}


def bench_e2e(model: Path, frames: int, threads: int, timeout: float = 30.0) -> dict:
    """Time bare ONNX Runtime calls and the node's end-to-end path, interleaved per frame."""
    images = load_split(sample_dir(), 'val').images
    backend = create_backend('onnxruntime', model, threads)
    bare, e2e, lost = [], [], 0
    with serving_node({'model': str(model), 'num_threads': threads},
                      ['/seg_node/labels'], timeout) as (client, node):
        for index in range(WARMUP + frames):
            rgb = images[index % len(images)]
            started = time.perf_counter()
            backend.infer(rgb, confidence=False)
            bare_s = time.perf_counter() - started
            stamp, sent = client.send(rgb, index)
            answer = client.wait(stamp, timeout).get('/seg_node/labels')
            if index < WARMUP:
                continue
            if answer is None:
                lost += 1
                continue
            bare.append(bare_s)
            e2e.append(answer[0] - sent)
        exit_status = node.stop()
    bare_ms, e2e_ms = latency_percentiles(bare), latency_percentiles(e2e)
    return {'benchmark': 'e2e', 'model': str(model), 'frame_size': list(images[0].shape[:2]),
            'threads': threads, 'frames': len(e2e), 'lost': lost,
            'bare_onnxruntime_ms': bare_ms, 'e2e_ms': e2e_ms,
            'ratio_p50': round(e2e_ms['p50'] / bare_ms['p50'], 3),
            'ratio_mean': round(e2e_ms['mean'] / bare_ms['mean'], 3),
            'node_exit_status': exit_status,
            'fastdds_profile': os.environ.get(PROFILE_VARIABLE, 'none'), **machine()}


def bench_backends(backends: dict[str, Backend], frames: int) -> dict:
    """Time each backend on the same sample frames, interleaved per frame."""
    images = load_split(sample_dir(), 'val').images
    latencies: dict[str, list[float]] = {name: [] for name in backends}
    for index in range(WARMUP + frames):
        rgb = images[index % len(images)]
        for name, backend in backends.items():
            started = time.perf_counter()
            backend.infer(rgb, confidence=False)
            if index >= WARMUP:
                latencies[name].append(time.perf_counter() - started)
    results = {name: latency_percentiles(values) for name, values in latencies.items()}
    reference = next(iter(results.values()))['p50']
    return {'benchmark': 'backends', 'frame_size': list(images[0].shape[:2]),
            'frames': frames, 'latency_ms': results,
            'speedup_p50_vs_first': {name: round(reference / r['p50'], 3)
                                     for name, r in results.items()},
            'labels_agree_with_first': _agreement(backends, images[0]), **machine()}


def _agreement(backends: dict[str, Backend], rgb: np.ndarray) -> dict[str, float]:
    outputs = {name: backend.infer(rgb, confidence=False).labels.copy()
               for name, backend in backends.items()}
    reference = next(iter(outputs.values()))
    return {name: round(float((labels == reference).mean()), 5)
            for name, labels in outputs.items()}
