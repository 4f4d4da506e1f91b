#!/bin/bash
# Re-measure the model-dependent figures (README Performance, docs/model_card.md) for a new default.
#   scripts/remeasure_model.sh CHECKPOINT_DIR MODEL PREVIOUS_MODEL OUT
# CHECKPOINT_DIR holds MODEL's calibrated.pt (timed as the torch backend); PREVIOUS_MODEL is
# timed beside MODEL as a control. Run it on an otherwise idle machine: latency comes first.
set -euo pipefail
W=$1; M=$2; PREV=$3; O=$4
T=.venv/bin/seg_tool
P=.venv/bin/python
D=../shared/datasets/camvid
mkdir -p $O
lscpu | grep -E 'Model name|Flags' | cut -c1-200 > $O/cpu.txt
# latency first, machine otherwise idle
$T evaluate --model $M --threads 2 --json $O/val.json > $O/val.txt
$T evaluate --model $PREV --threads 2 --json $O/val_previous.json > $O/val_previous.txt
$T bench --model $M --threads 2 --frames 60 --backend onnxruntime=$M --backend onnxruntime-previous=$PREV --backend torch=$W/calibrated.pt --json $O/bench_backends.json
for i in 1 2 3; do $T bench --model $M --frames 40 --threads 2 --json $O/bench_e2e_$i.json; done
for i in 1 2 3; do $T quantize $M --target cpu --calibration-images $D --output $O/int8_cpu_$i.onnx --compare-on $D --threads 2 > $O/quantize_cpu_$i.txt 2>&1; done
$T quantize $M --calibration-images $D --output $O/int8_trt.onnx --compare-on $D --threads 2 > $O/quantize_trt.txt 2>&1
# accuracy-only
for sz in "448 592" "544 720"; do n=${sz/ /x}; $T evaluate --model $M --threads 2 --inference-size $sz --json $O/val_$n.json > /dev/null; $T evaluate --model $M --threads 2 --split train --inference-size $sz --json $O/train_$n.json > /dev/null; done
$T resolution-ceiling --model $M --strides 16 8 4 1 --threads 2 --json $O/ceiling_model.json > $O/ceiling_model.txt
$P scripts/bag_parity.py $D val $M > $O/bag_parity.txt
echo done
