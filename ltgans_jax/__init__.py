"""ltgans_jax: Lifelong Twin GANs (Ye & Bors) in JAX/Flax."""

from ltgans_jax import xla_cpu as _xla_cpu

# Before any JAX computation: XLA reads XLA_FLAGS once, when its backends start.
_xla_cpu.apply_defaults()
