#!/bin/bash
# Training on a remote GPU machine that gets a copy of this repository and hands results
# back through size-limited transfers (64 MiB each way) and time-limited calls. Use it when
# training on the development CPU is too slow (an epoch of the shipped recipe: ~23 s on 2
# CPU cores, ~2.2 s on an H100); with a GPU in your own machine, run
# `seg_tool train --device cuda` instead.
#   1. development machine: .venv/bin/python scripts/gpu_data.py   (.gpudata/camvid, ~57 MB)
#   2. GPU machine, .gpudata carried along:
#        RUNS="fast_fine:2 fast_fine:3" AVERAGE=1 DEADLINE_S=430 scripts/gpu_sweep.sh
#      trains the runs of the shipped recipe (config/train_camvid.yaml) side by side, each
#      followed with AVERAGE=1 by the weight-averaging stage (config/average_camvid.yaml) into
#      RUN_avg. Every stage stops at a shared deadline (DEADLINE_S after the start; rerun on
#      the same machine to continue), then scripts/gpu_pack.py packs the runs into $OUT.
#   3. development machine: tar -xf each returned tar -C runs; finish an interrupted stage
#      with `seg_tool train ... --resume`; score with scripts/score_checkpoint.sh.
# RUNS="arch:seed ..." (default: the shipped architecture, seeds 2-4); MAX_RUNS caps how many
# start (default: by the CPU count; augmentation runs on the CPU).
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
R=${RUNS_DIR:-/tmp/runs}; mkdir -p "$R"
nvidia-smi -L
cores=$(nproc)
max_runs=${MAX_RUNS:-$(( cores >= 8 ? 4 : 3 ))}
echo "cores $cores, at most $max_runs runs"
start=$(date +%s)
deadline=$(( start + ${DEADLINE_S:-420} ))

stage() {  # stage NAME [train flags...]: one stage, stopped at the deadline
  local name=$1; shift
  local left=$(( deadline - $(date +%s) ))
  (( left > 0 )) || return 1
  timeout "$left" python3 -m seg_node.tools.cli.main train --data .gpudata/camvid \
    --classes seg_node/models/classes.yaml --output "$R/$name" --threads 2 \
    --val-limit 2 --device "${DEVICE:-cuda}" ${TRAIN_LIMIT:+--train-limit $TRAIN_LIMIT} \
    --resume "$@" >> "$R/$name.log" 2>&1
}

run() {  # run ARCH SEED: the first stage, then (AVERAGE=1) the averaging stage
  local arch=$1 seed=$2 name=${1}_s$2
  stage "$name" --recipe config/train_camvid.yaml --arch "$arch" --seed "$seed" \
    --epochs "${EPOCHS:-200}" --eval-every 0 || return
  [[ ${AVERAGE:-0} == 1 ]] || return 0
  stage "${name}_avg" --recipe config/train_camvid.yaml --recipe config/average_camvid.yaml \
    --arch "$arch" --seed "$seed" --init-from "$R/$name/last.pt" \
    ${AVERAGE_EPOCHS:+--epochs $AVERAGE_EPOCHS}
}

count=0
for spec in ${RUNS:-fast_fine:2 fast_fine:3 fast_fine:4}; do
  (( count++ < max_runs )) || break
  run "${spec%:*}" "${spec#*:}" &
done
wait
echo "trained for $(( $(date +%s) - start )) s"
tail -q -n 1 "$R"/*.log
python3 scripts/gpu_pack.py "$R" "$OUT"
