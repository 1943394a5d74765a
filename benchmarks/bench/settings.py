"""What the step benchmark measures: the three steps, their names, and the sizes of the full
run and of the quick smoke run."""

from __future__ import annotations

KINDS = ('adversarial', 'student', 'full')
KIND_NAMES = {'adversarial': 'LAKD critic+Assistant', 'student': 'Student',
              'full': 'full LAKD step'}
SHORT_MODE = {'pixel_shuffle': 'ps', 'strided': 'strided'}

FULL = dict(batch=64, latent=100, width=64, vae_latent=64, sizes=(32, 64),
            jax_modes_32=('pixel_shuffle', 'strided'), channels_last=True,
            batch_scaling=(32, 64, 128, 256), rounds=5, window_s=3.0, scaling_rounds=3,
            tasks=(1, 5, 10), device_counts=(1, 2, 4), worker_rounds=3, memory_sizes=(32, 64),
            flags_ab=True)
# Our CPU-scale setting (``config_base.cpu_scale_values``: 28x28x1, widths 16, the Student's 32
# latents), where the project's long runs train; ``benchmark_cpu_choices.py --scale cpu``.
CPU_SCALE = dict(batch=64, latent=100, width=16, vae_latent=32, channels=1, sizes=(28,))
# The smoke run: every code path once (except torch.compile and the XLA flags A/B, which are
# slow to start), tiny networks, one image size.
QUICK = dict(batch=8, latent=16, width=8, vae_latent=8, sizes=(32,),
             jax_modes_32=('pixel_shuffle',), channels_last=False, batch_scaling=(8,),
             rounds=2, window_s=0.1, scaling_rounds=2, tasks=(1, 5, 10), device_counts=(2,),
             worker_rounds=2, memory_sizes=(32,), flags_ab=False)


def impl_name(framework_variant: str, mode: str) -> str:
  """'jax', 'pixel_shuffle' -> 'jax ps': the name of an implementation in the report."""
  return {'jax': 'jax', 'eager': 'torch eager', 'eager_cl': 'torch eager channels_last',
          'eager_1t': 'torch eager 1 thread', 'compile': 'torch.compile'}[framework_variant] + (
              f' {SHORT_MODE[mode]}')
