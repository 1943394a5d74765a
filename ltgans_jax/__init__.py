"""ltgans_jax: Lifelong Twin GANs (Ye & Bors) in JAX/Flax."""
