"""Many hosts: the same network step multi-controller on JAX's own distributed runtime.

Every process runs the same program; `initialize` joins them into one runtime, after which
`jax.devices()` lists the devices of every process and `network.make_mesh()` builds one mesh that
spans all of them, the model axis sharded across hosts. On CPU the collectives go through gloo.

  # on each host (or each local process):
  python scripts/train.py --config=... --coordinator_address=10.0.0.1:1234 \\
      --num_processes=2 --process_id=$RANK
"""
from __future__ import annotations

import jax
import numpy as np


def initialize(coordinator_address: str, num_processes: int, process_id: int,
               *, cpu_collectives: str = "gloo") -> None:
  """Joins this process to a multi-process JAX runtime (call before any other jax use)."""
  if num_processes < 1 or not 0 <= process_id < num_processes:
    raise ValueError(f"process_id: {process_id} must be in [0, num_processes={num_processes})")
  if ":" not in coordinator_address:
    raise ValueError(f"coordinator_address: expected host:port, got {coordinator_address!r}")
  if num_processes == 1:
    return
  if jax.config.jax_platforms in (None, "", "cpu") or "cpu" in str(jax.config.jax_platforms):
    jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id)


def finish() -> None:
  """Leaves a multi-process runtime cleanly: waits for every process, then shuts down.

  Without the barrier a process that finishes first (e.g. one that writes no files) tears down its
  gloo connections while the others still use them, and both abort (SIGABRT). A no-op for one
  process.
  """
  if jax.process_count() == 1:
    return
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  multihost_utils.sync_global_devices("bittensor_jax.distributed.finish")
  jax.distributed.shutdown()


def global_put(tree, shardings):
  """Places host values (identical on every process) as global arrays with the given shardings.

  Works single- and multi-process: each process materializes only its addressable shards.
  Typed PRNG keys travel as their key data and are re-wrapped.
  """
  def put(x, sharding):
    if isinstance(x, jax.Array) and (jax.process_count() == 1 or not x.is_fully_addressable):
      return jax.device_put(x, sharding)  # a no-op when x already has this sharding
    if jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key):
      impl = jax.random.key_impl(x)
      data = put(jax.random.key_data(x), sharding)
      return jax.random.wrap_key_data(data, impl=impl)
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])
  return jax.tree.map(put, tree, shardings)


def gather(tree):
  """Every leaf as a full numpy array on every process (an all-gather across hosts)."""
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel

  def get(x):
    if not isinstance(x, jax.Array) or x.is_fully_addressable or x.is_fully_replicated:
      return np.asarray(x)
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return jax.tree.map(get, tree)


def is_main_process() -> bool:
  """True on the process that writes files (history, summaries, plots)."""
  return jax.process_index() == 0
