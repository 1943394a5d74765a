"""The paper's VAE-only lifelong baselines (``lgm``, ``curl``) behind ``methods.LifelongMethod``."""
