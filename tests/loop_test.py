"""Tests for bittensor_jax.loop: outputs of a run, bit-exact resume after SIGKILL, corrupt
checkpoint fallback, config errors.

The runs are real `scripts/train.py` subprocesses of the smoke network (80 blocks) on one CPU
device, as a laptop has; the in-process calls of `train_and_evaluate` resume or refuse their
workdirs. Why subprocesses: the persistent compilation cache keys every program by the client's
device count, so an in-process run on conftest's 4 fake devices can share no compile with a
subprocess, while these runs share one with each other and with scripts_test.py's runs of the
same network (ordered before this file in conftest.SLOW_FIRST). Sharded, on 4 fake devices, the
smoke network compiled in 82 s instead of 59 s and ran 5x slower; sharding has its own tests in
network_test.py and distributed_test.py.
"""
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from bittensor_jax import config as config_lib
from bittensor_jax import history, loop
from bittensor_jax.chain import emission

ROOT = pathlib.Path(__file__).resolve().parents[1]
PRESET = str(ROOT / "configs" / "default.py") + ":smoke"
OVERRIDES = {"run.blocks": 80, "run.checkpoint_every_epochs": 2, "run.log_every_epochs": 4}
TIMING_KEYS = ("blocks_per_second", "compile_seconds")  # wall-clock figures, not results
ONE_DEVICE = jax.devices()[:1]


def _config():
  return config_lib.load_preset(PRESET, OVERRIDES)


def _env(tmp_path_factory) -> dict:
  return {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one device


def _train_cmd(workdir) -> list[str]:
  return [sys.executable, str(ROOT / "scripts" / "train.py"), f"--config={PRESET}",
          *(f"--config.{k}={v}" for k, v in OVERRIDES.items()), f"--workdir={workdir}"]


def _assert_trees_equal(a, b):
  strip = lambda t: jax.tree.map(
      lambda x: jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
      else x, t)
  la, lb = jax.tree.leaves(strip(a)), jax.tree.leaves(strip(b))
  assert jax.tree.structure(strip(a)) == jax.tree.structure(strip(b))
  for x, y in zip(la, lb):
    x, y = np.asarray(x), np.asarray(y)
    assert x.dtype == y.dtype and x.shape == y.shape
    assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f")


def _assert_runs_equal(dir_a, dir_b):
  cfg = config_lib.network_config(_config())
  step_a, state_a, _ = loop.restore_latest(cfg, dir_a, num_devices=1)
  step_b, state_b, _ = loop.restore_latest(cfg, dir_b, num_devices=1)
  assert step_a == step_b == 8
  _assert_trees_equal(state_a, state_b)
  sa = json.loads((pathlib.Path(dir_a) / "summary.json").read_text())
  sb = json.loads((pathlib.Path(dir_b) / "summary.json").read_text())
  for k in TIMING_KEYS:
    sa.pop(k), sb.pop(k)
  assert sa == sb
  ha, hb = history.read_all(pathlib.Path(dir_a) / "history"), history.read_all(
      pathlib.Path(dir_b) / "history")
  assert ha.keys() == hb.keys()
  for k in ha:
    np.testing.assert_array_equal(ha[k], hb[k], err_msg=k)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("smoke_run") / "run"
  done = subprocess.run(_train_cmd(workdir), cwd=ROOT, env=_env(tmp_path_factory),
                        capture_output=True, text=True, timeout=900, check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  return workdir, json.loads((workdir / "summary.json").read_text())


def test_smoke_run_writes_everything(smoke_run):
  workdir, summary = smoke_run
  saved = json.loads((workdir / "config.json").read_text())
  assert saved["run"]["blocks"] == 80 and saved["network"]["num_servers"] == 6
  on_disk = json.loads((workdir / "summary.json").read_text())
  for key in loop.SUMMARY_KEYS:
    assert key in summary and key in on_disk, key
  assert summary["blocks"] == 80
  # genesis: the validators' stake (network.NetworkConfig.validator_stake_tao, default 1000 TAO
  # each), then era 0's DefaultBlockEmission (1 TAO) per block (SPEC.md 3.1)
  net_cfg = config_lib.network_config(_config())
  genesis_tao = sum(net_cfg.validator_stake_tao or [1000.0] * net_cfg.num_validators)
  assert summary["total_issuance_rao"] == (
      int(genesis_tao * emission.RAO_PER_TAO) + 80 * emission.DEFAULT_BLOCK_EMISSION_RAO)
  assert set(summary["deregistrations"]) == {"total", *loop.DEREG_KINDS}
  assert 0 <= summary["honest_stake_share"] <= 1
  for key in ("ensemble_loss", "best_server_loss", "isolated_server_loss"):
    assert 0 < summary[key] < 10, key
  assert summary["blocks_per_second"] > 0
  h = history.read_all(workdir / "history")
  assert history.num_epochs(workdir / "history") == 8
  np.testing.assert_array_equal(h["block"], np.arange(1, 9) * 10)
  assert h["stake"].shape == (8, 8) and h["weights"].shape == (8, 8, 8)
  np.testing.assert_array_equal(h["role"][-1], [1, 1, 0, 0, 0, 0, 0, 0])
  assert h["registrations"].sum() == 2  # a registration every 30 blocks
  assert h["deregistrations"].sum() == summary["deregistrations"]["total"]
  assert sorted(int(p.name) for p in (workdir / "checkpoints").iterdir()) == [4, 6, 8]


def test_resume_after_sigkill_is_bit_identical(smoke_run, tmp_path, tmp_path_factory):
  """README "Run the same command again ... to resume": a run SIGKILLed after its first checkpoint
  and resumed ends bit-identical (state, summary, history) to an uninterrupted run."""
  workdir_b, _ = smoke_run
  workdir_a = tmp_path / "a"
  env = _env(tmp_path_factory)
  proc = subprocess.Popen(_train_cmd(workdir_a), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  first = workdir_a / "checkpoints" / "2"
  deadline = time.monotonic() + 900  # generous: compiling on a loaded 2-core CI machine is slow
  while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"
  assert first.exists(), "no first checkpoint within the deadline"
  assert not (workdir_a / "summary.json").exists()
  done = subprocess.run(_train_cmd(workdir_a), cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=300, check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "resuming" in done.stderr
  _assert_runs_equal(workdir_a, workdir_b)


def test_corrupt_newest_checkpoint_falls_back(smoke_run, tmp_path, tmp_path_factory):
  workdir_b, _ = smoke_run
  workdir = tmp_path / "c"
  shutil.copytree(workdir_b, workdir)
  (workdir / "summary.json").unlink()
  for f in (workdir / "checkpoints" / "8" / "state").rglob("*"):
    if f.is_file() and f.parent.name == "d":
      f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
  done = subprocess.run(_train_cmd(workdir), cwd=ROOT, env=_env(tmp_path_factory),
                        capture_output=True, text=True, timeout=300, check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "checkpoint step 8 is corrupt or incomplete" in done.stderr
  assert "resuming" in done.stderr and "from epoch 6" in done.stderr
  _assert_runs_equal(workdir, workdir_b)


def test_bad_override_names_the_field(tmp_path):
  c = _config()
  with c.unlocked():
    c.network.num_servers = 1
  with pytest.raises(ValueError, match="network.num_servers"):
    loop.train_and_evaluate(c, tmp_path / "bad", devices=ONE_DEVICE)
  assert not (tmp_path / "bad").exists()
  with pytest.raises(ValueError, match="network.model.width"):  # not a multiple of heads
    config_lib.network_config(config_lib.load_preset(PRESET, {"network.model.width": 33}))  # heads=2
  with pytest.raises(ValueError, match="network.kapa"):
    config_lib.load_preset(PRESET, {"network.kapa": 1})
  with pytest.raises(ValueError, match="run.blocks"):
    config_lib.run_settings(config_lib.load_preset(PRESET, {"run.blocks": 0}))


def test_resume_with_a_different_config_is_refused(smoke_run):
  workdir, _ = smoke_run
  c = config_lib.load_preset(PRESET, {**OVERRIDES, "network.kappa": 40000})
  with pytest.raises(ValueError, match="network.kappa"):
    loop.train_and_evaluate(c, workdir, devices=ONE_DEVICE)


def test_resume_with_a_history_shorter_than_the_checkpoints_is_refused(smoke_run, tmp_path):
  workdir = tmp_path / "copy"
  shutil.copytree(smoke_run[0], workdir)
  (workdir / ".lock").unlink(missing_ok=True)
  # checkpoints at epochs 4, 6, 8; the history now claims only 3 epochs
  (workdir / "history" / "progress.json").write_text(json.dumps({"num_epochs": 3}))
  with pytest.raises(ValueError, match="history/ holds 3 epochs but the oldest kept checkpoint"):
    loop.train_and_evaluate(_config(), workdir, devices=ONE_DEVICE)


def test_second_run_on_a_held_workdir_names_the_holder(smoke_run):
  with loop.WorkdirLock(smoke_run[0]):
    with pytest.raises(ValueError, match=f"in use by pid {os.getpid()} on"):
      loop.train_and_evaluate(_config(), smoke_run[0], devices=ONE_DEVICE)


def test_failed_start_leaves_no_workdir(tmp_path):
  c = config_lib.load_preset(PRESET, {**OVERRIDES, "network.data_dir": str(tmp_path / "nope")})
  with pytest.raises(ValueError, match="network.data_dir"):
    loop.train_and_evaluate(c, tmp_path / "run", devices=ONE_DEVICE)
  assert not (tmp_path / "run").exists()


def test_summary_has_per_validator_dividends_and_vtrust(smoke_run):
  _, summary = smoke_run
  rows = summary["validators"]
  assert [r["uid"] for r in rows] == [0, 1]
  assert sum(r["dividends"] for r in rows) == pytest.approx(1.0)
  assert all(0 <= r["vtrust"] <= 1 for r in rows)


def test_read_history_adds_the_servers_losses(smoke_run):
  """loop.read_history: every field of the history, plus server_loss [E, K] = the quality
  (validation loss) columns of the uids whose last role is server, in uid order."""
  from bittensor_jax import plots  # pylint: disable=import-outside-toplevel
  workdir, summary = smoke_run
  h = loop.read_history(workdir)
  raw = history.read_all(workdir / "history")
  assert set(h) == set(raw) | {"server_loss", "validator_behaviour"}
  assert len(h["validator_behaviour"]) == _config().network.num_validators
  for k in raw:
    np.testing.assert_array_equal(h[k], raw[k], err_msg=k)
  servers = np.nonzero(raw["role"][-1] == plots.SERVER)[0]
  cfg = _config()
  assert len(servers) == cfg.network.num_servers
  assert h["server_loss"].shape == (history.num_epochs(workdir / "history"), len(servers))
  np.testing.assert_array_equal(h["server_loss"], raw["quality"][:, servers])
  assert np.isfinite(h["server_loss"]).all() and (h["server_loss"] > 0).all()
  # best_server_loss is the best honest server on the test split (issue 9), from the same row
  honest = raw["behaviour"][-1] == 0
  assert float(np.nanmin(raw["test_loss"][-1][honest])) == summary["best_server_loss"]


def test_describe_names_the_run_in_the_figures_title(smoke_run):
  """scripts/plot.py titles the dashboard with loop.describe: the workdir, the network's
  composition, the exchange and scoring modes and the run length, read from config.json."""
  workdir, _ = smoke_run
  title = loop.describe(workdir)
  cfg = config_lib.network_config(_config())
  assert title.startswith(f"{workdir.name}: {cfg.num_validators} validators")
  assert f"exchange {cfg.exchange}, scoring {cfg.scoring}" in title
  assert title.endswith(f"width {cfg.model.width} depth {cfg.model.depth}, 80 blocks")
  assert loop.describe(workdir / "nowhere") == str(workdir / "nowhere")


def test_summarizing_a_finished_run_again_keeps_its_timing(smoke_run, tmp_path):
  """A second `train_and_evaluate` on a finished workdir runs no block; its summary keeps the
  blocks/s and compile time of the run that did (they were written as null)."""
  workdir = tmp_path / "again"
  shutil.copytree(smoke_run[0], workdir)
  first = json.loads((workdir / "summary.json").read_text())
  assert first["blocks_per_second"] and first["compile_seconds"]
  again = loop.train_and_evaluate(_config(), workdir, devices=ONE_DEVICE)
  for key in TIMING_KEYS:
    assert again[key] == first[key], key
  written = json.loads((workdir / "summary.json").read_text())
  assert [written[k] for k in TIMING_KEYS] == [first[k] for k in TIMING_KEYS]
  assert json.loads(json.dumps(again)) == written == first  # what it returns is what it wrote
