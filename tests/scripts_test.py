"""Smoke tests of scripts/*.py as a user runs them: exit codes, files written, summary lines.

One real `scripts/train.py` run of the smoke network (20 blocks) is shared; `plot.py`,
`export.py` and `sweep.py` work on it or on runs of the same config (the persistent compilation
cache under the session's tmp dir saves their compiles). Bad input must end with exit status 2,
one line naming the field, and no workdir left behind.
"""
import json
import os
import pathlib
import subprocess
import sys

import pandas as pd
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PRESET = f"{ROOT / 'configs' / 'default.py'}:smoke"
FAST = ["--config.run.blocks=20", "--config.run.checkpoint_every_epochs=1"]
SCENARIO = ROOT / "tests" / "testdata" / "chain" / "scenarios" / "epoch_logs_simple.json"


def _run(script: str, *args, env=None, cwd=None) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, str(ROOT / "scripts" / script), *map(str, args)],
                        capture_output=True, text=True, env=env, cwd=cwd, timeout=1200,
                        check=False)


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
  # one CPU device, as a user's laptop has (conftest's 4 fake devices are for the sharding
  # tests): the smoke network compiles in 59 s instead of 82 s and runs 5x faster unsharded
  e = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  e["PYTHONPATH"] = os.pathsep.join([str(ROOT), e.get("PYTHONPATH", "")])
  return e


@pytest.fixture(scope="module")
def trained(tmp_path_factory, env) -> pathlib.Path:
  workdir = tmp_path_factory.mktemp("scripts") / "run"
  proc = _run("train.py", f"--config={PRESET}", *FAST, f"--workdir={workdir}", env=env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "UID" in proc.stdout and "VTRUST" in proc.stdout  # the metagraph table
  assert "Unable to initialize backend" not in proc.stderr
  return workdir


def test_train_writes_a_run(trained):
  summary = json.loads((trained / "summary.json").read_text())
  assert summary["blocks"] == 20 and len(summary["validators"]) == 2


def test_plot_writes_both_figures(trained, env):
  proc = _run("plot.py", f"--workdir={trained}", env=env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  for name in ("dashboard.png", "supply_schedule.png"):
    assert str(trained / name) in proc.stdout and (trained / name).stat().st_size > 10_000


def test_export_csv_and_parquet(trained, env, tmp_path):
  for fmt in ("csv", "parquet"):
    proc = _run("export.py", f"--workdir={trained}", f"--format={fmt}", f"--out_dir={tmp_path}",
                env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
  history = pd.read_csv(tmp_path / "history.csv")
  history["behaviour"] = history["behaviour"].fillna("")  # network rows: "" reads back as NaN
  assert list(history.columns) == ["epoch", "block", "uid", "role", "behaviour", "field", "value"]
  incentive = history[history.field == "incentive"]
  assert sorted(incentive.epoch.unique()) == [0, 1] and sorted(incentive.uid.unique()) == list(
      range(8))
  assert set(history[history.uid.between(0, 1)].role) == {"validator"}
  assert set(history[history.uid == -1].role) == {"network"}
  pd.testing.assert_frame_equal(history, pd.read_parquet(tmp_path / "history.parquet"),
                                check_dtype=False)
  metagraph = pd.read_csv(tmp_path / "metagraph.csv")
  assert len(metagraph) == 8 and metagraph["DIVIDENDS"].sum() == pytest.approx(1.0)


@pytest.mark.parametrize("args, message", [
    (["--config.network.batch=0"], "network.batch: must be >= 1, got 0"),
    (["--config.network.kappa=1.5"], "network.kappa"),
    (["--data_dir=/no/such/folder"], "network.data_dir: '/no/such/folder' is not a folder"),
    # absl and ml_collections fail these while parsing flags, before main (bittensor_jax/cli.py)
    (["--config.network.num_servrs=3"], "no such config field: 'num_servrs'"),
    (["--config.network.sync_every=abc"], "flag --config.network.sync_every=abc"),
])
def test_train_bad_input_exits_2_without_a_workdir(args, message, env, tmp_path):
  proc = _run("train.py", f"--config={PRESET}", *FAST, *args, f"--workdir={tmp_path / 'run'}",
              env=env)
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert message in proc.stderr and "Traceback" not in proc.stderr
  assert not (tmp_path / "run").exists()


def test_train_without_workdir_leaves_no_empty_run_folder(env, tmp_path):
  proc = _run("train.py", f"--config={PRESET}", "--data_dir=/no/such/folder", env=env,
              cwd=tmp_path)
  assert proc.returncode == 2
  assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_second_train_on_a_busy_workdir_exits_2(trained, env):
  from bittensor_jax import loop  # pylint: disable=import-outside-toplevel
  with loop.WorkdirLock(trained):
    proc = _run("train.py", f"--config={PRESET}", *FAST, f"--workdir={trained}", env=env)
  assert proc.returncode == 2
  assert f"is in use by pid {os.getpid()}" in proc.stderr


def test_sweep_merges_runs_of_the_same_workdir(env, tmp_path):
  common = [f"--config={PRESET}", *FAST, "--param=run.log_every_epochs",
            f"--workdir={tmp_path}", "--metrics=validator_dividends,server_consensus,ensemble_loss"]
  first = _run("sweep.py", *common, "--values=1,2", env=env)
  assert first.returncode == 0, first.stderr[-3000:]
  assert f"2 runs in {tmp_path / 'sweep.json'}" in first.stdout
  second = _run("sweep.py", *common, "--values=3", env=env)
  assert second.returncode == 0, second.stderr[-3000:]
  sweep = json.loads((tmp_path / "sweep.json").read_text())
  assert [r["value"] for r in sweep["runs"]] == [1, 2, 3]
  assert (tmp_path / "sweep.png").stat().st_size > 10_000
  bad = _run("sweep.py", *common[:-1], "--metrics=nope", "--values=1", env=env)
  assert bad.returncode == 2 and "--metrics: unknown ['nope']" in bad.stderr


def test_replay_plot(env, tmp_path):
  proc = _run("replay_plot.py", f"--out_dir={tmp_path}", SCENARIO, env=env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert (tmp_path / "epoch_logs_simple.png").stat().st_size > 10_000
  bad = _run("replay_plot.py", f"--out_dir={tmp_path}", tmp_path / "missing.json", env=env)
  assert bad.returncode == 2 and "Traceback" not in bad.stderr
