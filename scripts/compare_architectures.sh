#!/usr/bin/env bash
# Same-budget comparison of the four architectures
# (docs/experiments/2026-11-25-upsampling-design.md): every variant trains 30 epochs on
# CamVid train at half resolution (180x240; 144x144 crops, batch 8, seed 0) and reports
# per-class val IoU at that resolution in runs/compare_<arch>/log.jsonl.
# Usage: scripts/compare_architectures.sh [THREADS]   (about 1 h on 2 CPU cores)
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
for arch in fast naive decoder segnet; do
  .venv/bin/seg_tool train --arch "$arch" --output "runs/compare_$arch" --image-scale 0.5 \
    --epochs 30 --crop 144 --scale 0.7 1.8 --class-weighting median-frequency --eval-every 10 \
    --jaccard-weight 0 --aux-weight 0 --threads "$threads" --seed 0 \
    --resume > "runs/compare_$arch.log" 2>&1
done
