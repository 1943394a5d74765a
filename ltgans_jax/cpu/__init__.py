"""The CPU's performance choices, kept out of the maths and applied from outside.

* ``backend``: the run's ``Backend``, every 'auto' setting resolved once at start-up from the
  backend JAX runs on, and handed down (``train``, the inspect modes);
* ``conv``: the convolution layers with CPU-friendly gradients (stride 1, and the strided and
  transposed ones written as stride-1 convolutions), handed to the networks as their ``conv``
  and ``conv_transpose`` (``models``) on the CPU;
* ``schedule``: the barrier the fused calls (``run.fused``) put between the steps of one call;
* ``xla_flags``: the XLA:CPU flags ``main`` sets before JAX starts.
"""
