#!/bin/bash
# TensorRT on a GPU machine: build the fp32, fp16 and int8 engines of a model, check their
# labels against ONNX Runtime on real frames (fp32 >= 99.9 %, fp16 >= 99 %, int8 >= 95 % of
# the QDQ model's), and time the backends; every step writes JSON or a log into OUT.
# Needs `tensorrt` (10.x/11.x) or `tensorrt_rtx` plus cuda-python and a GPU; TENSORRT_MODULE
# forces one. Exit status: 0 when every parity check passed, else 1 (steps continue).
#   scripts/gpu_check.sh [OUT]   env: MODEL, DATA (CamVid-format), LIMIT (val frames),
#                                PYTHON, TENSORRT_MODULE, CALIBRATION_SPLIT, CALIBRATION_COUNT
set -u
OUT=${1:-gpu_check}
MODEL=${MODEL:-seg_node/models/camvid_fast_fine.onnx}
DATA=${DATA:-../shared/datasets/camvid}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
ENGINES=$(cd "$OUT" && pwd)/engines
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
module=(${TENSORRT_MODULE:+--tensorrt-module "$TENSORRT_MODULE"})
status=0

seg_tool() { "$PYTHON" -m seg_node.tools.cli.main "$@"; }

step() {  # step NAME COMMAND...: run, log to OUT/NAME.log, remember a failure
  echo "== $1"
  local name=$1; shift
  "$@" > "$OUT/$name.log" 2>&1
  local code=$?
  tail -n 3 "$OUT/$name.log"
  if (( code != 0 )); then echo "   $name failed (exit $code)"; status=1; fi
}

{ nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader || true
  "$PYTHON" - <<'EOF'
import importlib
for name in ('tensorrt', 'tensorrt_rtx', 'cuda.bindings.runtime', 'onnxruntime'):
    try:
        print(name, getattr(importlib.import_module(name), '__version__', 'installed'))
    except ImportError as err:
        print(name, 'missing:', err)
EOF
} > "$OUT/environment.txt" 2>&1
cat "$OUT/environment.txt"

INT8_MODEL=$OUT/$(basename "$MODEL" .onnx)_int8.onnx
step quantize seg_tool quantize "$MODEL" --target tensorrt --calibration-images "$DATA" \
  --split "${CALIBRATION_SPLIT:-train}" --count "${CALIBRATION_COUNT:-100}" \
  --output "$INT8_MODEL"
for precision in fp32 fp16 int8; do
  model=$MODEL; [[ $precision == int8 ]] && model=$INT8_MODEL
  step "build_$precision" seg_tool build-engine "$model" --precision "$precision" \
    --engine-dir "$ENGINES" "${module[@]}"
  step "parity_$precision" seg_tool tensorrt-parity "$model" --precision "$precision" \
    --engine-dir "$ENGINES" --data "$DATA" ${LIMIT:+--limit "$LIMIT"} "${module[@]}" \
    --json "$OUT/parity_$precision.json"
done
# The benchmark's tensorrt backends look engines up in the default folder: point it at OUT.
ROS_HOME=$(cd "$OUT" && pwd)/ros
export ROS_HOME
mkdir -p "$ROS_HOME/seg_node" && ln -sfn "$ENGINES" "$ROS_HOME/seg_node/engines"
step bench seg_tool bench --model "$MODEL" --frames 200 --backend onnxruntime \
  --backend tensorrt-fp32 --backend tensorrt-fp16 --backend "tensorrt-int8=$INT8_MODEL" \
  --json "$OUT/bench.json"
echo "results in $OUT (exit $status)"
exit $status
