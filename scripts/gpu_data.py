"""Write the CamVid train split into .gpudata/camvid so it fits a 64 MiB device transfer.

Train frames become JPEG quality 99 with 4:4:4 chroma (about 58 MB instead of 91 MB of PNG;
mean absolute error 0.5 levels, PSNR 50 dB); labels stay PNG (lossless). Only the first two
val frames are kept: the sweep does not evaluate on the device (``--eval-every 0
--val-limit 2``), val is scored here from the original PNGs.

Usage: .venv/bin/python scripts/gpu_data.py [CAMVID_DIR]
"""

import shutil
import sys
from pathlib import Path

import cv2

JPEG_OPTIONS = [cv2.IMWRITE_JPEG_QUALITY, 99,
                cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]


def main() -> None:
    """Write .gpudata/camvid from the CamVid folder given (default ../shared/...)."""
    source = Path(sys.argv[1] if len(sys.argv) > 1 else '../shared/datasets/camvid')
    target = Path('.gpudata/camvid')
    shutil.rmtree(target, ignore_errors=True)
    for folder in ('train', 'trainannot', 'val', 'valannot'):
        (target / folder).mkdir(parents=True)
    lines = []
    for line in (source / 'train.txt').read_text().split('\n'):
        if not line.strip():
            continue
        image, label = line.split()
        jpeg = Path(image).with_suffix('.jpg')
        _, data = cv2.imencode('.jpg', cv2.imread(str(source / image)), JPEG_OPTIONS)
        (target / jpeg).write_bytes(data.tobytes())
        shutil.copy(source / label, target / label)
        lines.append(f'{jpeg} {label}')
    (target / 'train.txt').write_text('\n'.join(lines) + '\n')
    val = [line for line in (source / 'val.txt').read_text().split('\n') if line.strip()][:2]
    for line in val:
        for name in line.split():
            shutil.copy(source / name, target / name)
    (target / 'val.txt').write_text('\n'.join(val) + '\n')
    print(f'wrote {len(lines)} train pairs and {len(val)} val pairs to {target}')


if __name__ == '__main__':
    main()
