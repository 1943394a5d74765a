#!/usr/bin/env bash
# One session on a lent GPU: the benchmark, then MNIST -> Fashion-MNIST and the 4-task offline
# MSFO stand-in at the paper's sizes (32x32x3, z=100, batch 64, widths 64, 5 critic steps).
#   bash experiments/gpu_session.sh DATA_DIR OUT_DIR SECONDS_FOR_TRAINING
# DATA_DIR holds mnist/ and fashion_mnist/ (published IDX files). MNIST -> Fashion runs a fixed
# 5000 steps per task; the 4-task run then gets as many steps per task (multiple of 1000,
# 2000 to 10000) as the measured speed allows in the seconds left. Both choices are logged.
set -uo pipefail
DATA_DIR=$1; OUT=$2; BUDGET=${3:-420}
FIRST_STEPS=${FIRST_STEPS:-5000}  # EXTRA: more --config overrides (for a dry run on a CPU)
EXTRA=${EXTRA:-}
export PYTHONUNBUFFERED=1
START=$(date +%s)
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import jax, flax, optax, orbax.checkpoint as o; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, 'orbax', o.__version__, jax.devices())"
} | tee "$OUT/gpu.txt"

run() {  # name config steps
  local name=$1 config=$2 steps=$3 t0=$(date +%s)
  local left=$(( BUDGET - (t0 - START) ))
  # Bounded so that what finished (reports of finished tasks, checkpoints) is still packed.
  timeout --signal=TERM "$left" python3 -m ltgans_jax.main --config="$config" --workdir="workdirs/$name" \
    --config.data.data_dir="$DATA_DIR" --config.train.steps_per_task="$steps" \
    --config.train.log_every=500 --config.eval.num_examples=1000 $EXTRA 2>&1 \
    | grep -vE "^W|oneDNN|TF_ENABLE" > "$OUT/$name.log"
  echo "$name: $steps steps per task, wall time $(( $(date +%s) - t0 )) s, exit ${PIPESTATUS[0]}" \
    | tee -a "$OUT/runs.txt"
  grep -E "steps/s|done:" "$OUT/$name.log" | tail -4 | cut -c1-220
  tar czf "$OUT/$name.tgz" -C "workdirs/$name" report.md report.json metrics.jsonl config.json \
    samples figures eval 2>/dev/null
}

run mnist_fashion_gpu configs/mnist_fashion.py "$FIRST_STEPS"
rate=$(grep -oE "[0-9.]+ steps/s" "$OUT/mnist_fashion_gpu.log" | tail -1 | cut -d' ' -f1)
left=$(( BUDGET - ($(date +%s) - START) - 60 ))
steps=$(python3 -c "r=float('${rate:-50}'); print(max(min(2000, $FIRST_STEPS), min(10000, int(r*$left/4*0.8)//1000*1000)))")
echo "measured ${rate} steps/s; ${left} s left -> ${steps} steps per task" | tee -a "$OUT/runs.txt"
run msfo_offline_gpu configs/msfo_offline.py "$steps"
