#!/bin/bash
# Fit class offsets to one checkpoint of a run, export it and score it on val and train:
#   scripts/score_checkpoint.sh runs/fast_fine_s3_avg averaged   # reads .../averaged.pt
# Writes RUN/NAME/: calibrated.pt, calibration.json, model.onnx, val.json, train.json and
# recall_val.md (val pole recall by pole width). THREADS (default 2) sets the CPU threads.
set -euo pipefail
run=$1
name=$2
out=$run/$name
threads=${THREADS:-2}
tool=.venv/bin/seg_tool
mkdir -p "$out"
$tool calibrate-bias "$run/$name.pt" --output "$out/calibrated.pt" --json "$out/calibration.json" --threads "$threads"
$tool export "$out/calibrated.pt" --output "$out/model.onnx"
$tool evaluate --model "$out/model.onnx" --threads "$threads" --json "$out/val.json"
$tool evaluate --model "$out/model.onnx" --split train --threads "$threads" --json "$out/train.json" | tail -3
.venv/bin/python scripts/recall_by_width.py "$out/model.onnx" --split val > "$out/recall_val.md"
cat "$out/recall_val.md"
