"""Offline agents in JAX (``bc_jax``, ``iql_jax``, ``cql_jax``, ``dt_jax``, ``bct_jax``, ``bcq_jax``; pip extra ``rlgen[jax]``):
the torch agents' losses and defaults on small symbolic grids, every seed of a run trained side by side in one
jitted ``lax.scan`` vmapped over seeds, with the dataset on device.

``core`` (spec, per-seed state, the vmapped chunk of updates), ``data`` (the dataset on device, batches by
``jax.random`` indices), ``networks`` (flax), one module per algorithm (``bc``, ``bcq``, ``cql``, ``iql``, ``dt`` for DT
and BCT), ``agent`` (acting, msgpack files, the evaluator), ``run`` (seed groups and their run directories,
loading a run), ``train`` (the trainer). Importing this package imports no JAX; the modules do.
"""
