"""Speed of the batch pipeline: examples/s of ``TaskBatches`` on an MNIST-sized uint8 set.

    python experiments/benchmark_batching.py [--num_batches 3000] [--batch_size 64]
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ltgans_jax.data import batching  # pylint: disable=g-import-not-at-top


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--num_batches', type=int, default=3000)
  parser.add_argument('--batch_size', type=int, default=64)
  args = parser.parse_args()
  images = np.random.default_rng(0).integers(0, 256, (60000, 32, 32, 3), dtype=np.uint8)
  batches = batching.TaskBatches(images, args.batch_size, seed=0, task=0)
  for trial in range(3):
    start = time.perf_counter()
    for step in range(trial * args.num_batches, (trial + 1) * args.num_batches):
      batches.process_slice(step, 0, 1)
    seconds = time.perf_counter() - start
    print(f'trial {trial}: {args.num_batches * args.batch_size / seconds:,.0f} examples/s '
          f'({args.num_batches / seconds:,.0f} batches of {args.batch_size} from 60000 x '
          '32x32x3 uint8)')


if __name__ == '__main__':
  main()
