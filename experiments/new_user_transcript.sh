#!/usr/bin/env bash
# A new user's session, recorded as a transcript: pip install (not editable) into a fresh venv,
# a packaged config run by name from a folder outside the repository, the run opened with the
# Python API, arrays sampled and plotted.
#
# Heavy: installs every dependency (jax, flax, orbax, tensorflow-datasets, ...) from the
# package registries and trains the tiny test config (two tasks of 4 steps).
#
#   bash experiments/new_user_transcript.sh      # REPO, PYTHON, OUT may be overridden
#
# Writes $OUT/transcript.log (every command and its output) and $OUT/samples.png.
set -euo pipefail

REPO=${REPO:-$(cd "$(dirname "$0")/.." && pwd)}
PYTHON=${PYTHON:-python3}
OUT=${OUT:-$REPO/experiments/results/new_user_transcript}
ROOT=$(mktemp -d /tmp/ltgans_new_user.XXXXXX)  # the user's folder: no repository in sight
VENV=$ROOT/venv
mkdir -p "$OUT"
exec > >(tee "$OUT/transcript.log") 2>&1

# setuptools builds in the source folder; remove its build/ afterwards unless it was there.
if [ -e "$REPO/build" ]; then had_build=yes; else had_build=no; fi
cleanup() { if [ "$had_build" = no ]; then rm -rf "$REPO/build"; fi; }
trap cleanup EXIT

echo "# $(date -u +%FT%TZ) on $(hostname); repository $REPO at $(git -C "$REPO" rev-parse --short HEAD)" \
     "($(git -C "$REPO" status --porcelain | wc -l) uncommitted paths)"
set -x
"$PYTHON" --version
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install "$REPO"
cleanup
cd "$ROOT"

# The installed package, not the repository, is what Python imports; the configs are in it.
"$VENV/bin/pip" show ltgans-jax | grep -E '^(Name|Version|Location|Editable)'
"$VENV/bin/pip" show -f ltgans-jax | grep -E 'ltgans_jax/configs/(msfo|test)\.py'
"$VENV/bin/python" -c 'import ltgans_jax, os; print(ltgans_jax.__file__); assert "site-packages" in ltgans_jax.__file__'

# A config by name, from here; an unknown name is one sentence listing the names.
"$VENV/bin/python" -m ltgans_jax.main --config=tset --workdir=runs/typo || true
"$VENV/bin/python" -m ltgans_jax.main --config=test --workdir=runs/test
ls runs/test

# The run in the Python API: arrays, not files.
MPLBACKEND=Agg "$VENV/bin/python" - <<'PY'
import matplotlib.pyplot as plt
import numpy as np
from ltgans_jax import api

print('configs by name:', api.config_names())
run = api.Run.open('runs/test')  # the config comes from runs/test/config.json
print(run)
samples = {name: run.sample(name, num=16, seed=0) for name in run.networks}
for name, images in samples.items():
  print(f'{name}: {images.dtype} {images.shape}, pixels {images.min()}..{images.max()}')
originals = run.tasks[0].test.images[:8]
z = run.encode(originals)  # the Student's posterior means
print('latents', z.shape, 'mean |z|', float(np.abs(z).mean()))
reconstructions = run.decode(z)
print('IWAE NLL after each task (rows) on each task (columns):')
print(run.matrices()['nll_iwae']['matrix'])

panels = {**samples, 'test images / Student reconstructions':
          np.concatenate([originals, reconstructions])}
figure, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6))
for axis, (title, images) in zip(axes, panels.items()):
  axis.imshow(api.image_grid(images), cmap='gray')
  axis.set_title(title, fontsize=9)
  axis.axis('off')
figure.tight_layout()
figure.savefig('samples.png', dpi=120)
print('wrote samples.png')
PY
cp samples.png "$OUT/samples.png"
set +x
echo "# done: $OUT/transcript.log, $OUT/samples.png; the user's folder was $ROOT"
