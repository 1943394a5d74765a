#!/usr/bin/env bash
# Every sequence config for a few steps: the ones whose data is in DATA_DIR train 2 steps per
# task (tiny evaluation); the others must stop at once with the offline message.
#   bash experiments/smoke_configs.sh DATA_DIR OUT_FILE
set -u
DATA_DIR=$1; OUT=$2
PY=${PYTHON:-.venv/bin/python}
: > "$OUT"
for config in configs/*.py; do
  name=$(basename "$config" .py)
  case $name in __init__|test) continue;; esac
  workdir=$(mktemp -d)/run
  start=$(date +%s)
  $PY -m ltgans_jax.main --config="$config" --workdir="$workdir" \
    --config.data.data_dir="$DATA_DIR" --config.train.steps_per_task=2 \
    --config.train.batch_size=8 --config.train.log_every=1 --config.eval.num_examples=20 \
    --config.eval.iwae_samples=2 --config.eval.feature_net_steps=2 > "$workdir.log" 2>&1
  status=$?
  tasks=$(grep -oE "[0-9]+ tasks: .*;" "$workdir.log" | head -1)
  error=$(grep -E "^error: " "$workdir.log" | head -1)
  echo "$name: exit $status after $(( $(date +%s) - start )) s; ${tasks:-no training} ${error}" \
    | tee -a "$OUT"
done
