#!/usr/bin/env bash
# One session on a lent accelerator, in under 10 minutes (a lent GPU comes for 15 minutes in
# all, start-up included):
#   bash experiments/gpu_session.sh DATA_DIR OUT_DIR [SECONDS]
# DATA_DIR holds mnist/ and fashion_mnist/ (published IDX files); OUT_DIR receives every figure,
# log and report; SECONDS (default 540) bounds the whole script. In order:
#  1. facts: the device and the versions (OUT/device.txt);
#  2. the bare full step against the fused training loop, steps/s, at the accelerator config
#     (configs/mnist_fashion.py) and at the CPU-scale config (mnist_fashion_cpu), and 1 against
#     3 seeds batched with vmap at the CPU-scale config (benchmarks/loop_overhead.py:
#     OUT/loop/README.md); the goal is a loop at >= 90% of its bare step;
#  3. a whole configs/mnist_fashion_cpu.py run, training, the feature network and every
#     evaluation, and its wall time (OUT/runs.txt, OUT/mnist_fashion_cpu/);
#  4. whatever time is left: the reproduction driver's runs (experiments/reproduce.py: Table 3
#     and Fig. 4b at the CPU-scale configs, 3 seeds batched in one run per method), stopped by
#     a timeout a minute before the budget ends; the finished runs' per-seed files and the
#     report land in OUT/reproduce/, to be committed under experiments/results/paper/.
# GPU_SESSION_DRY=1 runs every step at tiny sizes on the CPU (tests/test_gpu_session.py does,
# so that the script cannot fail for a typo on the day).
set -uo pipefail
DATA_DIR=$1; OUT=$2; BUDGET=${3:-540}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
START=$(date +%s)
PYTHON=${PYTHON:-python3}
left() { echo $(( BUDGET - ($(date +%s) - START) )); }

if [ "${GPU_SESSION_DRY:-0}" = 1 ]; then  # tiny sizes, every command line as on the day
  LOOP_ARGS=(--part1=test --part2=test --steps=4 --demo_steps=4 --rounds=1
             --seed_batching=vmap --test_critic_steps=1)
  # No forgetting heatmaps in the dry runs: 2 x 21 matplotlib figures per run, about 10 s of a
  # tiny run (experiments/results/test_suite/), which nothing here reads (the test suite's
  # reference run draws them for the tests that read them).
  TINY=(--config.train.steps_per_task=4 --config.train.log_every=2 --config.train.batch_size=8
        --config.train.checkpoint_every=2 --config.model.generator_width=4
        --config.model.critic_width=4 --config.vae.width=4 --config.eval.num_examples=16
        --config.eval.grid_rows=2 --config.eval.iwae_samples=3
        --config.eval.feature_net_steps=5 --config.eval.heatmaps=False)
  REPRODUCE_ARGS=(--artefacts=fig4b --seeds=1 --quick --max_runs=1 --set=eval.heatmaps=False)
else
  LOOP_ARGS=(--part1=mnist_fashion,mnist_fashion_cpu --part2=mnist_fashion_cpu --steps=300
             --demo_steps=200 --rounds=2 --seed_batching=vmap)
  TINY=()
  REPRODUCE_ARGS=(--artefacts=table3,fig4b --seeds=3 --batch_seeds)
fi

# 1. Facts.
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null \
    || echo "no nvidia-smi"
  "$PYTHON" -c "import jax, flax, optax, orbax.checkpoint as o; print('jax', jax.__version__, \
'flax', flax.__version__, 'optax', optax.__version__, 'orbax', o.__version__, jax.devices())"
} | tee "$OUT/device.txt"

# 2. The loop against its bare step, and 3 seeds against 1.
timeout --signal=TERM "$(left)" "$PYTHON" benchmarks/loop_overhead.py "${LOOP_ARGS[@]}" \
  --out "$OUT/loop" > "$OUT/loop.log" 2>&1
echo "loop_overhead: exit $?, $(( $(date +%s) - START )) s since the start" | tee -a "$OUT/runs.txt"

# 3. A whole CPU-scale run.
t0=$(date +%s)
timeout --signal=TERM "$(left)" "$PYTHON" -m ltgans_jax.main \
  --config=configs/mnist_fashion_cpu.py --workdir="$OUT/workdirs/mnist_fashion_cpu" \
  --config.data.data_dir="$DATA_DIR" "${TINY[@]}" > "$OUT/mnist_fashion_cpu.log" 2>&1
code=$?
echo "mnist_fashion_cpu: exit $code, wall time $(( $(date +%s) - t0 )) s" | tee -a "$OUT/runs.txt"
grep -E "steps/s|Finished" "$OUT/mnist_fashion_cpu.log" | tail -3 | cut -c1-200
mkdir -p "$OUT/mnist_fashion_cpu"
cp -r "$OUT/workdirs/mnist_fashion_cpu/report.md" "$OUT/workdirs/mnist_fashion_cpu/report.json" \
  "$OUT/workdirs/mnist_fashion_cpu/samples" "$OUT/mnist_fashion_cpu/" 2>/dev/null

# 4. The reproduction driver's runs with what is left (a minute kept for packing).
if [ -f experiments/reproduce.py ] && [ "$(left)" -gt 90 ]; then
  timeout --signal=TERM $(( $(left) - 60 )) "$PYTHON" experiments/reproduce.py \
    --data_dir="$DATA_DIR" --size=cpu --workdir_root="$OUT/workdirs/reproduce" \
    --results="$OUT/reproduce" "${REPRODUCE_ARGS[@]}" \
    > "$OUT/reproduce.log" 2>&1
  echo "reproduce: exit $?, $(( $(date +%s) - START )) s since the start" | tee -a "$OUT/runs.txt"
fi
rm -rf "$OUT/workdirs"  # checkpoints stay on the lent machine; the reports are in OUT
echo "done in $(( $(date +%s) - START )) s" | tee -a "$OUT/runs.txt"
