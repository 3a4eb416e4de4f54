"""Tests for bittensor_jax.checkpoint: bit-exact round trips, keep-last-k, corruption fallback."""
import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bittensor_jax import checkpoint


@flax.struct.dataclass
class _State:
  stake_N: jax.Array
  loss_N: jax.Array
  permit_N: jax.Array
  key: jax.Array
  max_uids: int = flax.struct.field(pytree_node=False, default=4)


def _state(step: int) -> _State:
  return _State(
      stake_N=jnp.arange(4, dtype=jnp.int64) * (10**12) + step,
      loss_N=jnp.array([0.1, 1e-30, -3.5, np.nan], dtype=jnp.float32) + step,
      permit_N=jnp.array([True, False, step % 2 == 0, True]),
      key=jax.random.fold_in(jax.random.key(0, impl="threefry2x32"), step))


def _assert_identical(a: _State, b: _State) -> None:
  assert jax.tree.structure(a) == jax.tree.structure(b)
  assert jax.random.key_impl(a.key) == jax.random.key_impl(b.key)
  for x, y in zip(jax.tree.leaves(checkpoint._strip_keys(a)),
                  jax.tree.leaves(checkpoint._strip_keys(b))):
    x, y = np.asarray(x), np.asarray(y)
    assert x.dtype == y.dtype and x.shape == y.shape
    assert x.tobytes() == y.tobytes()


def _save_steps(ckpt: checkpoint.Checkpoints, steps) -> None:
  for step in steps:
    ckpt.save(step, _state(step), meta={"block": 360 * step, "config": "abc"})
  ckpt.wait()


def test_round_trip_is_bit_identical(tmp_path):
  ckpt = checkpoint.Checkpoints(tmp_path)
  _save_steps(ckpt, [7])
  step, state, meta = ckpt.restore(_state(0))
  assert step == 7 and meta == {"block": 2520, "config": "abc"}
  _assert_identical(state, _state(7))
  assert state.max_uids == 4
  # The restored key draws the same numbers as the saved one.
  np.testing.assert_array_equal(jax.random.uniform(state.key, (3,)),
                                jax.random.uniform(_state(7).key, (3,)))


def test_restore_into_abstract_template(tmp_path):
  ckpt = checkpoint.Checkpoints(tmp_path)
  _save_steps(ckpt, [1])
  step, state, _ = ckpt.restore(jax.eval_shape(lambda: _state(0)))
  assert step == 1
  _assert_identical(state, _state(1))


def test_keeps_last_k_and_interval(tmp_path):
  ckpt = checkpoint.Checkpoints(tmp_path, keep=2, every=2)
  _save_steps(ckpt, range(7))
  assert ckpt.all_steps() == [4, 6]
  ckpt.save(7, _state(7), force=True)
  ckpt.wait()
  assert ckpt.all_steps() == [6, 7] and ckpt.latest_step() == 7


def test_empty_dir_restores_none(tmp_path):
  assert checkpoint.Checkpoints(tmp_path).restore(_state(0)) is None


def _data_files(step_dir: pathlib.Path) -> list[pathlib.Path]:
  return [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"]


@pytest.mark.parametrize(
    "damage", ["truncate", "garble", "delete_state", "garble_meta", "checksum"])
def test_corrupt_newest_falls_back(tmp_path, damage):
  ckpt = checkpoint.Checkpoints(tmp_path, keep=3)
  _save_steps(ckpt, [1, 2, 3])
  ckpt.close()  # an unclosed manager's event loop warns when it is garbage-collected
  newest = tmp_path / "3"
  if damage == "truncate":
    for f in _data_files(newest):
      f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
  elif damage == "garble":
    for f in _data_files(newest):
      raw = bytearray(f.read_bytes())
      for i in range(len(raw) // 3, len(raw), 7):
        raw[i] ^= 0x5A
      f.write_bytes(bytes(raw))
  elif damage == "delete_state":
    shutil.rmtree(newest / "state")
  elif damage == "garble_meta":
    (newest / "meta" / "metadata").write_text("{not json")
  else:
    # Readable files whose leaves differ from what was saved: only the checksum catches it.
    meta_file = newest / "meta" / "metadata"
    meta = json.loads(meta_file.read_text())
    meta["checksum"] = "0" * 64
    meta_file.write_text(json.dumps(meta))
  reader = checkpoint.Checkpoints(tmp_path)
  with pytest.warns(UserWarning, match="step 3"):
    step, state, meta = reader.restore(_state(0))
  reader.close()
  assert step == 2 and meta["block"] == 720
  _assert_identical(state, _state(2))


def test_all_corrupt_restores_none(tmp_path):
  ckpt = checkpoint.Checkpoints(tmp_path)
  _save_steps(ckpt, [1, 2])
  for step in (1, 2):
    shutil.rmtree(tmp_path / str(step) / "state")
  with pytest.warns(UserWarning):
    assert ckpt.restore(_state(0)) is None


def test_resave_after_fallback_overwrites_newer(tmp_path):
  ckpt = checkpoint.Checkpoints(tmp_path)
  _save_steps(ckpt, [1, 2, 3])
  ckpt.save(2, _state(20))
  ckpt.wait()
  assert ckpt.all_steps() == [1, 2]
  _assert_identical(ckpt.restore(_state(0))[1], _state(20))


def test_leftover_tmp_dir_is_ignored_and_removed(tmp_path):
  ckpt = checkpoint.Checkpoints(tmp_path)
  _save_steps(ckpt, [1])
  # A process killed mid-save leaves an unfinalized tmp directory behind.
  tmp = tmp_path / "2.orbax-checkpoint-tmp-1234567"
  shutil.copytree(tmp_path / "1", tmp)
  (tmp / "state" / "_METADATA").unlink()
  ckpt = checkpoint.Checkpoints(tmp_path)
  assert ckpt.latest_step() == 1
  _save_steps(ckpt, [2])
  assert ckpt.all_steps() == [1, 2] and not tmp.exists()
  assert ckpt.restore(_state(0))[0] == 2


def test_sigkill_after_wait_loses_nothing(tmp_path):
  script = textwrap.dedent(f"""
      import os, signal, sys
      import jax
      jax.config.update("jax_enable_x64", True)
      sys.path.insert(0, {str(pathlib.Path(__file__).parent)!r})
      import checkpoint_test as t
      from bittensor_jax import checkpoint
      ckpt = checkpoint.Checkpoints({str(tmp_path)!r})
      ckpt.save(5, t._state(5), meta={{"block": 5}})
      ckpt.wait()
      os.kill(os.getpid(), signal.SIGKILL)
  """)
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             PYTHONPATH=str(pathlib.Path(__file__).parents[1]))
  proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                        timeout=120, check=False)
  assert proc.returncode == -9, proc.stderr.decode()[-2000:]
  step, state, meta = checkpoint.Checkpoints(tmp_path).restore(_state(0))
  assert step == 5 and meta == {"block": 5}
  _assert_identical(state, _state(5))


def test_relative_workdir(tmp_path, monkeypatch):
  """`--workdir=runs/x` is relative; orbax itself only takes absolute paths."""
  monkeypatch.chdir(tmp_path)
  ckpts = checkpoint.Checkpoints("runs/rel/checkpoints", keep=2)
  state = {"x": jax.numpy.arange(3)}
  ckpts.save(1, state, force=True)
  ckpts.wait()
  step, restored, _ = ckpts.restore(state)
  ckpts.close()
  assert step == 1 and (tmp_path / "runs/rel/checkpoints/1").is_dir()
  np.testing.assert_array_equal(restored["x"], state["x"])
