"""`seg_tool bench-transport`: measure which camera frames reach seg_node, per transport.

Each transport setting runs in a fresh process (Fast DDS reads its profile once per process)
holding the camera publisher, and starts seg_node as another process with the same
environment: the two-process set-up of a camera driver and the node on the car.
"""

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from rclpy.qos import ReliabilityPolicy

from seg_node import config_file, FASTDDS_PROFILE_NAME
from seg_node.evaluation.dataset import load_split
from seg_node.core.errors import SegNodeError
from seg_node.evaluation.scoring import latency_percentiles
from seg_node.tools.ros_client import live_session, PROFILE_VARIABLE, sample_dir

SIZES = ((480, 640), (1080, 1920), (2160, 2880), (2160, 3840))
RELIABILITY = {'reliable': ReliabilityPolicy.RELIABLE,
               'best_effort': ReliabilityPolicy.BEST_EFFORT}
LABELS_TOPIC = '/seg_node/labels'


def run_trials(model: Path, trials: list[tuple[str, int, int]], frames: int, rate: float,
               timeout: float = 2.0) -> list[dict]:
    """Send ``frames`` rgb8 frames per (reliability, height, width) trial, in order, to one node.

    Runs in this process with the current environment's transport. A frame counts as
    served when ``~/labels`` comes back with its stamp and the camera's size within
    ``timeout`` seconds.
    """
    base = load_split(sample_dir(), 'val').images[0]
    results = []
    index = 0
    with live_session({'model': str(model)}) as session:
        for reliability, height, width in trials:
            client = session.connect([LABELS_TOPIC], RELIABILITY[reliability])
            msg = client.frame(cv2.resize(base, (width, height)))
            latencies = []
            for _ in range(frames):
                index += 1
                stamp, sent = client.publish(msg, index)
                answer = client.wait(stamp, timeout).get(LABELS_TOPIC)
                if answer and (answer[1].height, answer[1].width) == (height, width):
                    latencies.append(answer[0] - sent)
                time.sleep(max(0.0, 1.0 / rate - (time.perf_counter() - sent)))
            results.append({'camera': reliability, 'size': f'{width}x{height}',
                            'served': len(latencies), 'sent': frames,
                            'e2e_ms': latency_percentiles(latencies)})
    return results


def run_in_process(model: Path, trials: list[tuple[str, int, int]], frames: int, rate: float,
                   profile: str | None) -> list[dict]:
    """Run :func:`run_trials` in a child process with ``profile`` (None: default transport)."""
    env = {**os.environ, 'ROS_DOMAIN_ID': str(random.randint(1, 200)),
           'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST', PROFILE_VARIABLE: profile or 'none'}
    request = json.dumps({'model': str(model), 'trials': trials, 'frames': frames,
                          'rate': rate})
    result = subprocess.run([sys.executable, '-m', 'seg_node.tools.bench_transport', request],
                            env=env, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise SegNodeError('transport worker failed: '
                           + result.stderr.strip().splitlines()[-1][-300:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def bench_transport(model: Path, frames: int = 10, rate: float = 3.0,
                    sizes: tuple[tuple[int, int], ...] = SIZES) -> dict:
    """Measure delivery and e2e latency per size, camera reliability and transport."""
    trials = [(reliability, height, width) for reliability in RELIABILITY
              for height, width in sizes]
    rows = []
    for name, profile in (('default', None),
                          ('shipped profile', str(config_file(FASTDDS_PROFILE_NAME)))):
        for row in run_in_process(model, trials, frames, rate, profile):
            rows.append({'transport': name, **row})
    return {'benchmark': 'transport', 'model': str(model), 'frames': frames, 'rate_hz': rate,
            'results': rows}


def format_transport_table(result: dict) -> str:
    """Render bench_transport's rows as a Markdown table."""
    lines = ['| transport | camera QoS | size | served | e2e p50 ms | e2e p99 ms |',
             '|---|---|---|---|---|---|']
    for row in result['results']:
        latency = row['e2e_ms']
        p50 = '-' if np.isnan(latency['p50']) else f'{latency["p50"]:.0f}'
        p99 = '-' if np.isnan(latency['p99']) else f'{latency["p99"]:.0f}'
        lines.append(f'| {row["transport"]} | {row["camera"]} | {row["size"]} | '
                     f'{row["served"]}/{row["sent"]} | {p50} | {p99} |')
    return '\n'.join(lines)


if __name__ == '__main__':
    arguments = json.loads(sys.argv[1])
    print(json.dumps(run_trials(Path(arguments['model']),
                                [tuple(trial) for trial in arguments['trials']],
                                arguments['frames'], arguments['rate'])))
