"""Write the CamVid train split into .gpudata/camvid, small enough for a 64 MiB transfer.

For scripts/gpu_sweep.sh on a remote GPU machine whose uploads are capped at 64 MiB (CamVid
train is 91 MB of PNG). Frames become JPEG quality 99 with 4:4:4 chroma and optimised
Huffman tables (about 54 MB; mean absolute error 0.5 levels, PSNR 50 dB; the optimisation
changes the file size, not the decoded pixels); labels stay PNG (lossless). Only the first
two val pairs are kept: the sweep does not evaluate on the GPU machine (``--eval-every 0
--val-limit 2``); val is scored on the development machine from the original PNGs.

Usage: .venv/bin/python scripts/gpu_data.py [CAMVID_DIR]
"""

import shutil
import sys
from pathlib import Path

import cv2

JPEG_OPTIONS = [cv2.IMWRITE_JPEG_QUALITY, 99, cv2.IMWRITE_JPEG_OPTIMIZE, 1,
                cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]


def main() -> None:
    """Write .gpudata/camvid from the CamVid folder given (default ../shared/...)."""
    source = Path(sys.argv[1] if len(sys.argv) > 1 else '../shared/datasets/camvid')
    target = Path('.gpudata/camvid')
    shutil.rmtree(target, ignore_errors=True)
    for folder in ('train', 'trainannot', 'val', 'valannot'):
        (target / folder).mkdir(parents=True)
    for split, limit in (('train', None), ('val', 2)):
        pairs = [line.split() for line in (source / f'{split}.txt').read_text().split('\n')
                 if line.strip()][:limit]
        lines = []
        for image, label in pairs:
            jpeg = Path(image).with_suffix('.jpg')
            _, data = cv2.imencode('.jpg', cv2.imread(str(source / image)), JPEG_OPTIONS)
            (target / jpeg).write_bytes(data.tobytes())
            shutil.copy(source / label, target / label)
            lines.append(f'{jpeg} {label}')
        (target / f'{split}.txt').write_text('\n'.join(lines) + '\n')
        print(f'wrote {len(lines)} {split} pairs to {target}')


if __name__ == '__main__':
    main()
