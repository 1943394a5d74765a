"""The CPU's performance choices, kept out of the maths and applied from outside.

* ``backend``: each 'auto' setting resolved once, from the backend JAX runs on, when a method
  is built or a run starts;
* ``conv``: the convolution layer with CPU-friendly gradients, handed to the networks as
  their ``conv`` (``models``) on the CPU;
* ``schedule``: the barrier the training loop puts between the steps of one fused call;
* ``xla_flags``: the XLA:CPU flags ``main`` sets before JAX starts.
"""
