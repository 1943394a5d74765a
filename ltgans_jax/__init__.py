"""ltgans_jax: Lifelong Twin GANs (Ye & Bors) in JAX/Flax.

Importing the package has no side effects. ``python -m ltgans_jax.main`` sets the package's
XLA:CPU flags before JAX starts (``cpu.xla_flags``); in a script or notebook, call
``ltgans_jax.cpu.xla_flags.apply_defaults()`` before the first JAX computation to get them.
"""
