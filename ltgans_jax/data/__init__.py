"""Datasets, task sequences and batching.

Every source ends as the same thing: a ``SplitArrays`` per split, that is uint8 images
[N, H, W, C] and int64 labels [N] in memory, batched by index (see ``batching``).
"""
