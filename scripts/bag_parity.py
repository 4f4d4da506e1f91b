"""eval-bag vs `seg_tool evaluate` on bags made from a CamVid split (docs/experiments, Bayer).

For each camera variant: make-bag, eval-bag, then the frames exactly as the bag delivers
them (decoded by rosbags-image, an independent decoder) saved losslessly and scored by
`seg_tool evaluate`. rosbags-image demosaics Bayer frames bilinearly, so the parity rows
run eval-bag with ``--debayer bilinear``; a last row scores the Bayer bag with the node's
default (VNG) against the original frames only. Usage:
    .venv/bin/python scripts/bag_parity.py ../shared/datasets/camvid val [MODEL]
"""

import json
import sys
import tempfile
from pathlib import Path

import cv2
from rosbags.image import compressed_image_to_cvimage, image_to_cvimage

from seg_node.evaluation.bags import CAMERA_TOPIC, GROUND_TRUTH_TOPIC, open_bag
from seg_node.tools.cli.main import main as seg_tool
from seg_node.models import DEFAULT_MODEL_PATH

VARIANTS = (('rgb8', ['--encoding', 'rgb8']), ('bgr8', ['--encoding', 'bgr8']),
            ('bayer_rggb8', ['--encoding', 'bayer_rggb8']), ('yuv422', ['--encoding', 'yuv422']),
            ('jpeg', ['--compressed', 'jpeg']))


def delivered_split(bag: Path, folder: Path) -> Path:
    """Save the bag's camera frames (as decoded by rosbags-image) and labels as a split."""
    (folder / 'img').mkdir(parents=True)
    (folder / 'gt').mkdir()
    lines = []
    with open_bag(bag) as reader:
        for connection, _, raw in reader.messages(reader.connections):
            msg = reader.deserialize(raw, connection.msgtype)
            name = f'{msg.header.stamp.sec}_{msg.header.stamp.nanosec:09d}.png'
            if connection.topic == GROUND_TRUTH_TOPIC:
                cv2.imwrite(str(folder / 'gt' / name), image_to_cvimage(msg))
                lines.append(f'img/{name} gt/{name}\n')
            elif connection.topic.startswith(CAMERA_TOPIC):
                bgr = (compressed_image_to_cvimage(msg, 'bgr8') if hasattr(msg, 'format')
                       else image_to_cvimage(msg, 'bgr8'))
                cv2.imwrite(str(folder / 'img' / name), bgr)
    (folder / 'split.txt').write_text(''.join(sorted(lines)))
    return folder / 'split.txt'


def main(data: str, split: str, model: str = str(DEFAULT_MODEL_PATH)) -> None:
    """Print a Markdown table of eval-bag and evaluate mIoU per variant."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        seg_tool(['evaluate', '--model', model, '--data', data, '--split', split,
                  '--json', str(root / 'original.json')])
        original = json.loads((root / 'original.json').read_text())['miou']
        rows = []
        for name, options in VARIANTS:
            bag = root / name
            seg_tool(['make-bag', data, str(bag), '--split', split, *options])
            topic = CAMERA_TOPIC + ('/compressed' if name == 'jpeg' else '')
            seg_tool(['eval-bag', str(bag), '--image-topic', topic, '--label-topic',
                      GROUND_TRUTH_TOPIC, '--model', model, '--debayer', 'bilinear',
                      '--json', str(root / 'bag.json')])
            from_bag = json.loads((root / 'bag.json').read_text())
            seg_tool(['evaluate', '--model', model, '--data',
                      str(delivered_split(bag, root / f'{name}_frames')),
                      '--json', str(root / 'same.json')])
            same = json.loads((root / 'same.json').read_text())['miou']
            miou = from_bag['miou']
            rows.append(f'| {name} | {from_bag["frames"]} | {miou:.4f} | {same:.4f} '
                        f'| {abs(miou - same):.6f} | {miou - original:+.4f} |')
        seg_tool(['eval-bag', str(root / 'bayer_rggb8'), '--image-topic', CAMERA_TOPIC,
                  '--label-topic', GROUND_TRUTH_TOPIC, '--model', model,
                  '--json', str(root / 'vng.json')])
        vng = json.loads((root / 'vng.json').read_text())
        rows.append(f'| bayer_rggb8, node default (vng) | {vng["frames"]} | {vng["miou"]:.4f} '
                    f'| | | {vng["miou"] - original:+.4f} |')
    print(f'evaluate on the original PNGs: mIoU {original:.4f}\n')
    print('| camera variant | frames | eval-bag mIoU | evaluate, same frames | difference '
          '| vs original PNGs |')
    print('|---|---|---|---|---|---|')
    print('\n'.join(rows))


if __name__ == '__main__':
    main(*sys.argv[1:])
