"""Smoke tests of experiments/gan_speed.py (the wall-clock GAN benchmark) and of its PyTorch
reference worker, on data that needs no download: a few seconds of training, numbers
meaningless."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'experiments'))

import gan_speed  # pylint: disable=g-import-not-at-top,wrong-import-position


def test_quick_run_records_a_finite_fid_curve(tmp_path):
  out = tmp_path / 'gan_speed'
  gan_speed.main(['--quick', '--settings=w16_adam_c1', f'--out={out}', '--budget_s=1.5',
                  '--eval_every_s=0.5', '--eval_samples=150', '--feature_net_steps=10'])
  with open(out / 'results.json') as f:
    results = json.load(f)
  record = results['settings']['w16_adam_c1']
  curve = record['curve']
  assert len(curve) >= 2
  assert all(math.isfinite(row['fid_own']) for row in curve)
  assert curve[-1]['train_seconds'] >= 1.5 and curve[-1]['generator_updates'] > 0
  assert math.isfinite(record['summary']['final_fid'])
  assert 0 <= record['summary']['classes_covered'] <= 10
  for name in ('table.md', 'fid_vs_time.png', 'feature_net.msgpack',
               os.path.join('samples', 'w16_adam_c1.png')):
    assert (out / name).exists(), name


def test_torch_worker_writes_samples_at_each_evaluation(tmp_path):
  pytest.importorskip('torch')
  images = np.random.default_rng(0).integers(0, 256, (600, 28, 28, 1), dtype=np.uint8)
  np.save(tmp_path / 'images.npy', images)
  subprocess.run([sys.executable, os.path.join(ROOT, 'experiments', 'gan_speed_torch.py'),
                  f'--train_images={tmp_path / "images.npy"}', f'--out={tmp_path}',
                  '--budget_s=0.5', '--eval_every_s=0.25', '--eval_samples=20', '--dim=4',
                  '--threads=1'], check=True, timeout=120)
  with open(tmp_path / 'curve.jsonl') as f:
    rows = [json.loads(line) for line in f]
  assert len(rows) >= 2 and rows[-1]['generator_updates'] > 0
  samples = np.load(tmp_path / rows[-1]['samples'])['images']
  assert samples.shape == (20, 28, 28, 1) and samples.dtype == np.uint8
