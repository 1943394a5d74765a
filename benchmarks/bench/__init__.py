"""Speed and memory of the LT-GANs steps: JAX against a PyTorch reference, on one machine.

Measured, for 32x32x3 (MNIST -> Fashion at the paper's sizes: z=100, batch 64, widths 64,
Student latent 64) and 64x64x3 (CelebA size, same widths):

* three steps: the LAKD critic + Assistant update (``impls.component_steps(...)
  ['adversarial']``), the Student update (``['student']``) and the full LAKD step
  (``GanMethod.train_steps()['lakd']`` with ``update_generators=True``);
* for JAX in both resample modes at 32 px, and for PyTorch (``benchmarks/torch_reference.py``)
  eager in both modes, eager with channels_last and eager with one thread (32 px, CPU), and
  ``torch.compile`` (of the parts that compile);
* the first call (JAX: trace + compile + run; torch.compile: compile + run), steps/s as the
  median over timed windows after warm-up, taken in interleaved rounds (every implementation
  once per round, the order reversed every other round) so that JAX / PyTorch ratios are
  computed per round, in pairs, on a noisy machine, with the CPU time other processes took
  during each window (from /proc/stat); XLA's temp buffer size;
* peak memory of each implementation alone in a fresh subprocess (GPU: the allocators' peaks;
  CPU: the process RSS from /proc/self/status, VmHWM reset around each step; the main
  process also reports its `resource.getrusage` max RSS).

Also: JAX steps/s against the batch size, the lifelong state's bytes after 1, 5 and 10 tasks,
and on CPU the full step with the batch sharded over 1, 2 and 4 simulated devices, and the
three steps with XLA's own CPU defaults against this package's (``ltgans_jax/cpu/xla_flags.py``:
YNNPACK fusions off), alternating, twice each (each in a subprocess, since XLA_FLAGS must be set
before JAX starts).

Writes ``results.md`` and ``results.json`` (and ``steps_per_sec.png`` when matplotlib is
installed) into ``--out`` (default ``experiments/results/benchmark/<platform>``).

  python benchmarks/benchmark.py            # the full run (tens of minutes on 2 CPU cores)
  python benchmarks/benchmark.py --quick    # a smoke run at tiny sizes
  python benchmarks/benchmark.py --skip_torch

Needs jax, flax, optax, chex and ml_collections; torch is optional (``--skip_torch`` or not
installed: JAX only). No TensorFlow.

The package, one job a module: ``main`` (flags and the order of work), ``settings`` (the steps
and the sizes), ``impls`` (the implementations timed; the one module that uses ``ltgans_jax``'s
internals), ``measure`` (timing, load, memory), ``sections`` (the in-process measurements),
``workers`` (the ones in fresh subprocesses), ``machine`` and ``report``. Importing it changes
nothing but what ``import ltgans_jax`` does (``impls``: the XLA:CPU flags, before JAX starts);
``benchmarks/benchmark.py`` is its command and calls ``experiments.common.setup()`` first.
"""
