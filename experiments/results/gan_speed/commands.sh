#!/usr/bin/env bash
set -euo pipefail
cd /work/main
while pgrep -f "ltgans_jax.main" > /dev/null; do sleep 5; done
start=$(date +%s)
.venv/bin/python experiments/gan_speed.py --data_dir=/work/shared/data --budget_s=360 \
  --eval_every_s=60 --feature_net_steps=1500 \
  --settings=torch_textbook,today_small,authors_optim,paper_scale,w16_adam_c1,w32_adam_c1,w32_ttur \
  --out=/work/runs/gan_speed
echo "wall $(( $(date +%s) - start )) s"
#!/usr/bin/env bash
set -euo pipefail
cd /work/main
while pgrep -f "gan_speed.sh" > /dev/null; do sleep 5; done
start=$(date +%s)
.venv/bin/python experiments/gan_speed.py --data_dir=/work/shared/data --budget_s=360 \
  --eval_every_s=60 --feature_net_steps=1500 --settings=w32_rmsprop,w24_rmsprop \
  --out=/work/runs/gan_speed
echo "wall $(( $(date +%s) - start )) s"
