"""Running a lifelong training: the fused loop, its hooks, checkpoints, reports, seeds, the
workdir's lock and writers, and the inspect modes that read a finished workdir."""
