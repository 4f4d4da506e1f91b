"""Measure how seg_node (its own process) takes decompression bombs; print JSON.

For each bomb (compressed transport: the 30000x30000 JPEG and the 20000x20000 PNG; raw
transport: an rgb8 Image claiming 30000x30000) the bomb is published, then a valid 360x480
CamVid frame every 0.1 s (the first 0.05 s after it) until one is answered on ~/labels; the
node is idle before each bomb. Reported per bomb: seconds from the bomb to that answer, the
node's RSS and peak RSS (VmHWM) after it, and its rejected count.
Usage:
    .venv/bin/python scripts/bomb_recovery.py [MODEL] [THREADS]
"""

import json
import sys
import time
from pathlib import Path

from sensor_msgs.msg import CompressedImage, Image

from seg_node import CAMERA_TOPIC
from seg_node.core.image_codec import encode_compressed
from seg_node.evaluation.dataset import load_split
from seg_node.models import DEFAULT_MODEL_PATH
from seg_node.tools.bench import machine
from seg_node.tools.hostile_inputs import jpeg_bomb, png_bomb
from seg_node.tools.ros_client import FrameClient, live_session, sample_dir, wait_until
from seg_node.tools.soak import CameraClient, process_memory_mb


def measure(transport: str, model: Path, threads: int) -> dict:
    """Publish each bomb of ``transport`` to a fresh node; time the next answered frame."""
    rgb = load_split(sample_dir(), 'val', 1).images[0]
    if transport == 'raw':
        message_type, topic = Image, CAMERA_TOPIC
        valid = FrameClient.frame(rgb)
        bombs = {'rgb8 30000x30000 claimed': Image(encoding='rgb8', height=30000,
                                                   width=30000, step=90000, data=bytes(64))}
    else:
        message_type, topic = CompressedImage, f'{CAMERA_TOPIC}/compressed'
        valid = CompressedImage(format='jpeg', data=encode_compressed(rgb, 'jpeg'))
        bombs = {'jpeg 30000x30000': CompressedImage(format='jpeg', data=jpeg_bomb(rgb)),
                 'png 20000x20000': CompressedImage(format='png', data=png_bomb())}
    results = {}
    with live_session({'model': str(model), 'num_threads': threads,
                       'image_transport': transport}) as session:
        client = CameraClient(message_type, topic, context=session.context)
        session.executor.add_node(client)
        node = session.node
        wait_until(client.connected, 60, node)
        index = 0
        for name, bomb in [('warm-up', None), *bombs.items()]:
            # start from an idle node, so that the bomb is taken, not replaced in its slot
            idle_since = time.perf_counter()
            wait_until(lambda since=idle_since: client.settled(since), 5, node)
            answered_before = len(client.answered)
            started = time.perf_counter()
            if bomb is not None:
                client.publish(bomb, index)
                index += 1
                time.sleep(0.05)
            answered = None
            while answered is None:
                client.publish(valid, index)
                index += 1
                if wait_until(lambda count=answered_before: len(client.answered) > count,
                              0.1, node):
                    answered = time.perf_counter() - started
            settled = time.perf_counter()
            wait_until(lambda since=settled: client.settled(since), 5, node)
            results[name] = {'bytes': len(bomb.data) if bomb else 0,
                             'next_frame_served_s': round(answered, 3),
                             'rejected': client.counters['rejected'],
                             **process_memory_mb(node.process.pid)}
        results['node_exit_status'] = node.stop()
    return results


def main() -> None:
    """Measure both transports with the given model and threads; print JSON."""
    model = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_MODEL_PATH
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    report = {'model': str(model), 'threads': threads, **machine(),
              **{transport: measure(transport, model, threads)
                 for transport in ('compressed', 'raw')}}
    print(json.dumps(report, indent=2))


if __name__ == '__main__':
    main()
