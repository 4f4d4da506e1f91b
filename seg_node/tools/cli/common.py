"""Helpers shared by the ``seg_tool`` command modules."""

import argparse
import json
from pathlib import Path

from seg_node.core.image_codec import DEBAYER_METHODS
from seg_node.core.inference.base import DEPLOY_BACKENDS
from seg_node.models import DEFAULT_MODEL_PATH

# CamVid-format data set used by commands that take --data (train, evaluate, quantize, ...).
DEFAULT_DATA = Path('../shared/datasets/camvid')


def write_json(path: str | None, payload: dict) -> None:
    """Print ``payload`` as JSON (``path`` None or '-') or write it to ``path``."""
    text = json.dumps(payload, indent=2)
    if path in (None, '-'):
        print(text)
    else:
        Path(path).write_text(text + '\n')
        print(f'wrote {path}')


def add_model_arguments(parser: argparse.ArgumentParser, threads_help: str) -> None:
    """Add --model, --classes, --backend, --threads and --inference-size (load_segmenter's)."""
    parser.add_argument('--model', type=Path, default=DEFAULT_MODEL_PATH,
                        help='ONNX model of the seg_node contract')
    parser.add_argument('--classes', type=Path,
                        help='class YAML (default: classes.yaml next to the model, else the '
                        'bundled one)')
    parser.add_argument('--backend', default='auto', choices=DEPLOY_BACKENDS)
    parser.add_argument('--threads', type=int, default=0, help=threads_help)
    parser.add_argument('--inference-size', type=int, nargs=2, metavar=('H', 'W'),
                        help="size the network sees (default: the model's training size)")


def add_topic_arguments(parser: argparse.ArgumentParser, label_required: bool) -> None:
    """Add --image-topic, --label-topic and --debayer: what a bag command reads from a bag."""
    parser.add_argument('--image-topic', required=True,
                        help='sensor_msgs/Image or CompressedImage topic')
    parser.add_argument('--label-topic', required=label_required,
                        help='ground truth (mono8 Image or PNG CompressedImage), matched by '
                        'header stamp')
    parser.add_argument('--debayer', default=DEBAYER_METHODS[0],
                        help="demosaicing of Bayer frames, as the node's debayer parameter: "
                        + ' | '.join(DEBAYER_METHODS))
