#!/bin/bash
# Train several runs of the shipped recipe (config/train_camvid.yaml) side by side on one GPU
# (device machine), each stopped after LIMIT_S seconds (resumable: rerun on the same machine
# to continue), then copy them into $OUT: fast_xl without optimiser state (weights only,
# < 16 MiB), others whole.
# Data: scripts/gpu_data.py first; carry .gpudata. Runs: RUNS="arch:seed ..." (default below).
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
R=${RUNS_DIR:-/tmp/runs}; mkdir -p "$R"
nvidia-smi -L
start=$(date +%s)
for spec in ${RUNS:-fast_xl:2 fast_xl:3 fast_wide:3 fast_wide:4}; do
  arch=${spec%:*}; seed=${spec#*:}
  timeout "${LIMIT_S:-420}" python3 -m seg_node.cli train --data .gpudata/camvid \
    --classes seg_node/models/classes.yaml --arch "$arch" --seed "$seed" \
    --output "$R/${arch}_s$seed" --recipe config/train_camvid.yaml --epochs "${EPOCHS:-200}" \
    --threads 2 --eval-every 0 --val-limit 2 --device "${DEVICE:-cuda}" \
    ${TRAIN_LIMIT:+--train-limit $TRAIN_LIMIT} --resume > "$R/${arch}_s$seed.log" 2>&1 &
done
wait
echo "trained for $(( $(date +%s) - start )) s"
tail -n 1 "$R"/*.log
python3 - "$R" <<'PY'
import os, shutil, sys, tarfile
from pathlib import Path
import torch
out, runs = Path(os.environ['OUT']), Path(sys.argv[1])
with tarfile.open(out / 'logs.tgz', 'w:gz') as tar:
    for run in sorted(p for p in runs.iterdir() if p.is_dir() and (p / 'last.pt').exists()):
        tar.add(run / 'log.jsonl', f'{run.name}/log.jsonl')
        state = torch.load(run / 'last.pt', map_location='cpu', weights_only=False)
        print(run.name, 'epoch', state['epoch'])
        if state['train_config']['arch'] == 'fast_xl':
            for key in ('optimizer', 'scheduler', 'numpy_rng', 'torch_rng'):
                state.pop(key)
            torch.save(state, out / f'{run.name}.pt')
        else:
            shutil.copy(run / 'last.pt', out / f'{run.name}.pt')
PY
