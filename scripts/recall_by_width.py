"""Print a class's recall by object width (the horizontal run of its truth pixels).

Tells a resolution limit (thin objects missed, wide ones found) from a recognition one
(missed at every width). Usage:
    .venv/bin/python scripts/recall_by_width.py seg_node/models/camvid_fast_fine.onnx \
        --split val --class pole --max-width 8
"""

import argparse
from pathlib import Path

from seg_node.core.classes import classes_beside, load_classes
from seg_node.tools.cli.common import DEFAULT_DATA
from seg_node.evaluation.dataset import load_split
from seg_node.core.inference.base import create_backend
from seg_node.evaluation.resolution import recall_by_width


def main() -> None:
    """Run the model over a split and print one Markdown row per width."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('model', type=Path)
    parser.add_argument('--data', type=Path, default=DEFAULT_DATA)
    parser.add_argument('--split', default='val')
    parser.add_argument('--class', dest='class_name', default='pole')
    parser.add_argument('--max-width', type=int, default=8)
    parser.add_argument('--threads', type=int, default=2)
    args = parser.parse_args()
    class_id = int(load_classes(classes_beside(args.model)).ids([args.class_name])[0])
    backend = create_backend('onnxruntime', args.model, args.threads)
    data = load_split(args.data, args.split)
    pairs = ((truth, backend.infer(image, confidence=False).labels)
             for image, truth in zip(data.images, data.labels, strict=True))
    pixels, recalled = recall_by_width(pairs, class_id, args.max_width)
    print(f'| {args.class_name} width (px) | share of truth pixels | recall |')
    print('|---|---|---|')
    for width, (count, found) in enumerate(zip(pixels, recalled, strict=True), start=1):
        label = f'{width}+' if width == args.max_width else str(width)
        recall = f'{found / count:.3f}' if count else '-'
        print(f'| {label} | {count / pixels.sum():.3f} | {recall} |')


if __name__ == '__main__':
    main()
