#!/usr/bin/env bash
# Issue 15's small real runs: MNIST -> Fashion, 400 steps per task, widths 16, 28x28x1, CPU.
set -euo pipefail
cd /work/main
for method in ltgans no_lakd curl; do
  start=$(date +%s)
  .venv/bin/python -m ltgans_jax.main --config=configs/mnist_fashion.py \
    --workdir=/work/runs/s15/$method --config.method=$method \
    --config.data.data_dir=/work/shared/data --config.data.image_size=28 --config.data.channels=1 \
    --config.model.generator_width=16 --config.model.critic_width=16 --config.vae.width=16 \
    --config.vae.latent_dim=32 --config.gan.critic_steps=2 --config.optim.gan_learning_rate=2e-4 \
    --config.train.steps_per_task=400 --config.train.log_every=100 --config.train.checkpoint_every=200 \
    --config.eval.num_examples=500 --config.eval.iwae_samples=10 --config.eval.feature_net_steps=1500 \
    > /work/runs/s15/$method.log 2>&1
  echo "$method $(( $(date +%s) - start )) s" >> /work/runs/s15/times.txt
done
