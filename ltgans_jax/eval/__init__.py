"""Evaluation: the NLL measures, the generative metrics and their feature networks, the
forgetting matrices after each task, the replay audit, and the latent-space figures."""
