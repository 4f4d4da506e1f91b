"""`seg_tool demo`: stream bundled CamVid frames through a real seg_node process.

Prints per-frame end-to-end latency (publish -> ~/labels received) and mIoU against the
CamVid labels, and writes colour and overlay PNGs to an output folder.
"""

from pathlib import Path

import cv2
import numpy as np

from seg_node.core.classes import load_classes
from seg_node.evaluation.dataset import load_split
from seg_node.evaluation.scoring import latency_percentiles
from seg_node.evaluation.metrics import ConfusionMatrix, format_table
from seg_node.models import DEFAULT_MODEL_PATH
from seg_node.tools.ros_client import image_array, sample_dir, serving_node

OUTPUTS = ('/seg_node/labels', '/seg_node/color', '/seg_node/overlay')


def run_demo(output_dir: Path, model: Path = DEFAULT_MODEL_PATH, repeats: int = 2,
             timeout: float = 30.0) -> dict:
    """Run the demo; return a summary with latencies (ms), mIoU and the node's exit status."""
    classes = load_classes()
    sample = load_split(sample_dir(), 'val')
    output_dir.mkdir(parents=True, exist_ok=True)
    total = ConfusionMatrix(classes.num_classes)
    latencies = []
    print(f'starting seg_node with {model}')
    with serving_node({'model': str(model)}, list(OUTPUTS), timeout) as (client, node):
        for index in range(repeats * len(sample.images)):
            frame = index % len(sample.images)
            rgb, truth = sample.images[frame], sample.labels[frame]
            stamp, sent = client.send(rgb, index)
            outputs = client.wait(stamp, timeout)
            if len(outputs) < len(OUTPUTS):
                node.check_alive()
                print(f'frame {index}: no answer within {timeout:.0f} s')
                continue
            received, labels_msg = outputs['/seg_node/labels']
            latencies.append(received - sent)
            labels = image_array(labels_msg)
            matrix = ConfusionMatrix(classes.num_classes)
            matrix.update(truth, labels)
            total.merge(matrix)
            name = Path(sample.names[frame]).stem
            for topic in ('color', 'overlay'):
                image = image_array(outputs[f'/seg_node/{topic}'][1])
                cv2.imwrite(str(output_dir / f'{name}_{topic}.png'),
                            cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            print(f'frame {index:2d} {name}: e2e latency {latencies[-1] * 1000:6.1f} ms, '
                  f'mIoU {matrix.scores().miou:.3f}')
        exit_status = node.stop()
    scores = total.scores()
    print(format_table(scores, classes.names))
    latency = latency_percentiles(latencies)
    print(f'{len(latencies)} frames, e2e latency p50 {latency["p50"]:.1f} ms, '
          f'p99 {latency["p99"]:.1f} ms; mIoU {scores.miou:.3f}; seg_node exited with '
          f'status {exit_status}; colour and overlay images in {output_dir}')
    return {'frames': len(latencies), 'latency_ms': latency, 'miou': scores.miou,
            'exit_status': exit_status, 'output_dir': str(output_dir),
            'matrix': np.asarray(total.matrix).tolist()}
