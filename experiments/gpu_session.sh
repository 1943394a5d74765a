#!/usr/bin/env bash
# One device session on a lent GPU (see README "Results"): the MNIST -> Fashion-MNIST run at the
# paper's sizes, then the benchmark. Run from the repo root on the GPU machine:
#   bash experiments/gpu_session.sh DATA_DIR OUT_DIR TRAIN_SECONDS
# DATA_DIR holds mnist/ and fashion_mnist/ (published IDX files). The number of steps per task
# is chosen from a measured probe so that training fits TRAIN_SECONDS; the choice is logged.
set -uo pipefail
DATA_DIR=$1; OUT=$2; TRAIN_SECONDS=${3:-240}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import jax; print(jax.__version__, jax.devices())" | tee -a "$OUT/gpu.txt"

probe_dir=$(mktemp -d)
python3 -m ltgans_jax.main --config=configs/mnist_fashion.py --workdir="$probe_dir" \
  --config.data.data_dir="$DATA_DIR" --config.train.steps_per_task=1000 \
  --config.train.log_every=500 --config.eval.num_examples=100 2>&1 | tee "$OUT/probe.log" \
  | grep -E "steps/s|done|Error" | cut -c1-200
rate=$(grep -oE "[0-9.]+ steps/s" "$OUT/probe.log" | tail -1 | cut -d' ' -f1)
steps=$(python3 -c "r=float('${rate:-20}'); print(max(1000, min(10000, int(r*$TRAIN_SECONDS/2)//1000*1000)))")
echo "probe: ${rate} steps/s -> ${steps} steps per task" | tee "$OUT/steps_choice.txt"

workdir=workdirs/mnist_fashion_gpu
start=$(date +%s)
python3 -m ltgans_jax.main --config=configs/mnist_fashion.py --workdir="$workdir" \
  --config.data.data_dir="$DATA_DIR" --config.train.steps_per_task="$steps" 2>&1 \
  | grep -vE "^W|oneDNN" > "$OUT/train.log"
echo "wall time $(( $(date +%s) - start )) s" | tee -a "$OUT/steps_choice.txt"
grep -E "steps/s|done" "$OUT/train.log" | tail -6 | cut -c1-200
tar czf "$OUT/mnist_fashion_gpu.tgz" -C "$workdir" report.md report.json metrics.jsonl samples
