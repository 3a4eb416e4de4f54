"""A thin orbax wrapper that saves any pytree of arrays and restores the newest valid one.

The state is an arbitrary pytree of arrays (flax.struct dataclasses, typed PRNG key arrays from
`jax.random.key`, int/float/bool leaves). Each step directory holds two items:

  state  the pytree, typed keys stored as their raw `jax.random.key_data` (orbax saves only plain
         dtypes); the impl name is kept in meta.
  meta   JSON: the caller's small dict under "user", a sha256 of every leaf under "checksum" and
         the impl names of the typed keys under "key_impls" (so an abstract template works).

Durability: orbax writes a step into a temporary directory and renames it when finalized, so a
step directory that exists under its final name is complete. `save` may return before the bytes
are written (async checkpointing); once `wait()` returns the rename has happened, so a SIGKILL
after `save(...)` + `wait()` loses nothing. A process killed mid-save leaves only a tmp directory,
which the next `Checkpoints` removes on start (`cleanup_tmp_directories=True`).

Corruption: a step whose files are missing, truncated or garbled either fails to restore (orbax /
tensorstore raise) or restores values whose checksum differs from the stored one. Both are
reported with `warnings.warn` naming the step, and the next older step is tried.
"""
import hashlib
import pathlib
import warnings
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

_STATE = "state"
_META = "meta"


def _is_key(x) -> bool:
  return isinstance(x, jax.Array | jax.ShapeDtypeStruct) and jax.dtypes.issubdtype(
      x.dtype, jax.dtypes.prng_key)


def _strip_keys(tree):
  """Replaces typed key arrays with their uint32 key data."""
  return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def _abstract(tree):
  """Template pytree -> ShapeDtypeStructs (typed keys as their key data) with a sharding."""
  default = jax.sharding.SingleDeviceSharding(jax.devices()[0])

  def leaf(x):
    if _is_key(x):
      x = jax.eval_shape(jax.random.key_data, x)
    sharding = getattr(x, "sharding", None)
    if not isinstance(sharding, jax.sharding.Sharding):
      sharding = default
    return jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sharding)

  return jax.tree.map(leaf, tree)


def _key_impls(tree) -> list[str]:
  """Names of the PRNG impls of the typed key leaves, in tree-flatten order."""
  return [str(jax.random.key_impl(x)) for x in jax.tree.leaves(tree) if _is_key(x)]


def _wrap_keys(template, restored, impls: list[str]):
  """Puts typed keys back where the template has them, with the saved impl names."""
  impls = iter(impls)

  def leaf(t, r):
    return jax.random.wrap_key_data(r, impl=next(impls)) if _is_key(t) else r

  return jax.tree.map(leaf, template, restored)


def checksum(tree) -> str:
  """sha256 over every leaf's dtype, shape and bytes, in tree-flatten order.

  Args:
    tree: a pytree of arrays with typed keys already stripped.

  Returns:
    The hex digest.
  """
  h = hashlib.sha256()
  for leaf in jax.tree.leaves(tree):
    if isinstance(leaf, jax.Array) and not (leaf.is_fully_addressable or leaf.is_fully_replicated):
      # a leaf sharded across processes: every process takes part in gathering it
      from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
      leaf = multihost_utils.process_allgather(leaf, tiled=True)
    a = np.ascontiguousarray(np.asarray(leaf))
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
  return h.hexdigest()


class Checkpoints:
  """Keeps the last `keep` checkpoints of a state pytree under `workdir`.

  Attributes:
    every: the save interval in steps.
    manager: the underlying `ocp.CheckpointManager`.
  """

  def __init__(self, workdir, keep: int = 3, every: int = 1):
    """Opens (creating if needed) the checkpoint directory.

    Args:
      workdir: directory that holds one subdirectory per saved step.
      keep: how many of the newest checkpoints to keep.
      every: save only steps that are a multiple of this (unless `force`).
    """
    self.every = every
    self.manager = ocp.CheckpointManager(
        pathlib.Path(workdir).absolute(),  # orbax refuses relative paths
        options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, save_interval_steps=every, create=True,
            cleanup_tmp_directories=True))

  def save(self, step: int, state, meta: dict | None = None, force: bool = False) -> bool:
    """Starts saving `state` at `step`; call `wait()` before relying on it being on disk.

    Steps at or after `step` that already exist are deleted first: a resumed run that redoes
    steps (for example after falling back past a corrupt checkpoint) overwrites them.

    Args:
      step: the step number (for example the epoch).
      state: the pytree to save.
      meta: a small JSON-serializable dict stored beside the state (config hash, block, ...).
      force: save even if `step` is not a multiple of `every`.

    Returns:
      Whether a save was started.
    """
    if force or step % self.every == 0:
      for old in self.manager.all_steps():
        if old >= step:
          self.manager.delete(old)
    plain = _strip_keys(state)
    full_meta = {"user": dict(meta or {}), "checksum": checksum(plain),
                 "key_impls": _key_impls(state)}
    return self.manager.save(
        step,
        args=ocp.args.Composite(**{
            _STATE: ocp.args.StandardSave(plain),
            _META: ocp.args.JsonSave(full_meta)}),
        force=force)

  def wait(self) -> None:
    """Blocks until every started save is written and renamed to its final directory."""
    self.manager.wait_until_finished()

  def latest_step(self) -> int | None:
    """The newest finalized step (not checked for corruption), or None."""
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    """All finalized steps, ascending."""
    return sorted(self.manager.all_steps())

  def restore_step(self, step: int, template_state) -> tuple[Any, dict]:
    """Restores one step and verifies its checksum.

    Args:
      step: the step to restore.
      template_state: a pytree of arrays or ShapeDtypeStructs with the state's structure.

    Returns:
      (state, meta), where meta is the dict given to `save`.

    Raises:
      ValueError: the restored leaves do not match the stored checksum.
      Exception: whatever orbax raises for missing or unreadable files.
    """
    out = self.manager.restore(
        step,
        args=ocp.args.Composite(**{
            _STATE: ocp.args.StandardRestore(_abstract(template_state)),
            _META: ocp.args.JsonRestore()}))
    plain, full_meta = out[_STATE], out[_META]
    if checksum(plain) != full_meta["checksum"]:
      raise ValueError(f"checksum mismatch in checkpoint step {step}")
    return _wrap_keys(template_state, plain, full_meta["key_impls"]), full_meta["user"]

  def restore(self, template_state, max_step: int | None = None
              ) -> tuple[int, Any, dict] | None:
    """Restores the newest checkpoint that reads back intact.

    Args:
      template_state: a pytree of arrays or ShapeDtypeStructs with the state's structure,
        dtypes and shapes (typed keys where the state has them).
      max_step: if given, only steps <= max_step are considered.

    Returns:
      (step, state, meta) of the newest valid checkpoint, or None when there is none.
    """
    self.wait()
    self.manager.reload()
    for step in sorted(self.manager.all_steps(), reverse=True):
      if max_step is not None and step > max_step:
        continue
      try:
        state, meta = self.restore_step(step, template_state)
      except Exception as e:  # pylint: disable=broad-exception-caught
        warnings.warn(f"checkpoint step {step} is corrupt or incomplete, skipping it: "
                      f"{type(e).__name__}: {str(e)[:300]}", stacklevel=2)
        continue
      return step, state, meta
    return None

  def close(self) -> None:
    """Waits for pending saves and releases the manager."""
    self.manager.close()
