"""Write the README's overlay figure: a camera frame beside seg_node's ~/overlay of it.

The frame goes through the node's own path (load_segmenter with the shipped model, the
Renderer at the default overlay_alpha 0.5). Usage:
    .venv/bin/python scripts/overlay_figure.py seg_node/sample/val/0016E5_08027.png \
        docs/images/overlay.png
"""

import sys
from pathlib import Path

import cv2
import numpy as np

from seg_node.core.pipeline import load_segmenter
from seg_node.core.render import Renderer
from seg_node.models import DEFAULT_MODEL_PATH

OVERLAY_ALPHA = 0.5
GAP_PX = 8
FIGURE_WIDTH_PX = 352  # per panel: keeps the PNG under 300 KB


def main() -> None:
    """Segment the frame at full size; save camera | overlay side by side, scaled down."""
    frame_path, output = Path(sys.argv[1]), Path(sys.argv[2])
    rgb = cv2.cvtColor(cv2.imread(str(frame_path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    segmenter, classes = load_segmenter(DEFAULT_MODEL_PATH, backend='onnxruntime')
    labels = segmenter.segment(rgb, confidence=False).labels
    renderer = Renderer(classes, OVERLAY_ALPHA)
    blended = renderer.overlay(rgb, renderer.colorize(labels))
    height = round(rgb.shape[0] * FIGURE_WIDTH_PX / rgb.shape[1])
    panels = [cv2.resize(image, (FIGURE_WIDTH_PX, height), interpolation=cv2.INTER_AREA)
              for image in (rgb, blended)]
    gap = np.full((height, GAP_PX, 3), 255, np.uint8)
    figure = np.hstack([panels[0], gap, panels[1]])
    output.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(output), cv2.cvtColor(figure, cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f'{output}: {figure.shape[1]}x{figure.shape[0]}, {output.stat().st_size} bytes')


if __name__ == '__main__':
    main()
