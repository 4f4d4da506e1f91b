#!/bin/bash
# eval-fleet throughput of 1 worker x 1 thread, 1 x 2 and 2 x 1 over the same drives, back to
# back, for ROUNDS rounds (docs/experiments/2026-12-07-fleet-scaling.md).
# Usage: scripts/fleet_scaling.sh DRIVES_FOLDER OUTPUT_FOLDER   (drives from make-bag --drives;
# SEG_TOOL: the seg_tool command, default seg_tool)
set -euo pipefail
drives=$1
output=$2
mkdir -p "$output"
echo "round workers threads frames seconds frames_per_second load_average"
for round in ${ROUNDS:-1 2}; do
  for config in "1 1" "1 2" "2 1"; do
    read -r workers threads <<< "$config"
    json=$output/round${round}_w${workers}_t${threads}.json
    rm -f "$json"
    ${SEG_TOOL:-seg_tool} eval-fleet "$drives"/drive_* --image-topic /camera/image_raw \
      --label-topic /camera/semantic_gt --workers "$workers" --threads "$threads" \
      --json "$json" > /dev/null 2>&1
    python3 -c "import json, sys; r = json.load(open(sys.argv[1]))['run']; \
print($round, r['workers'], r['threads_per_worker'], r['camera_frames'], r['seconds'], \
r['frames_per_second'], open('/proc/loadavg').read().split()[0])" "$json"
  done
done
