"""Every benchmark at a tiny size: the code runs and reports what it promises (no timing asserts)."""
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import consensus, network, numpy_epoch, run, torch_epoch
from bittensor_jax import network as bittensor_network
from bittensor_jax.chain import ledger, yuma


def _run_json(capsys, *args):
  assert run.main(["--size", "tiny", "--json", "--cache_dir", "", *args]) == 0
  lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("{")]
  assert len(lines) == 1
  return json.loads(lines[0])


def test_consensus_reports_the_promised_keys(capsys):
  res = _run_json(capsys, "--only", "consensus")
  for key in ("consensus_epochs_per_s", "consensus_f64_epochs_per_s", "numpy_epochs_per_s",
              "numpy_f64_epochs_per_s", "jax_loop_epochs_per_s", "jax_dense_epochs_per_s",
              "uid_scaling_ratio"):
    assert math.isfinite(res[key]) and res[key] > 0, key
  assert res["devices"] == jax.device_count() and res["benchmark"] == "consensus"
  assert "consensus" in consensus.report(res)
  # the ledger on R = validators rows is smaller than the dense one, at both sizes
  assert 0 < res["ledger_bytes"] < res["ledger_bytes_dense"]
  assert 0 < res["ledger_bytes_big"] < res["ledger_bytes_big_dense"]


def test_network_reports_the_promised_keys_and_writes_the_chart(capsys, tmp_path):
  png = tmp_path / "scaling.png"
  # on one of conftest's 4 fake devices: sharded, the tiny network compiled and ran several times
  # slower, and --devices is a flag to test anyway
  res = _run_json(capsys, "--only", "network", "--png", str(png), "--devices", "1")
  assert res["devices"] == 1
  for key in ("tiny_blocks_per_s", "tiny_tokens_per_s", "tiny_flops_share_of_matmul",
              "tiny_compile_s", "matmul_flops_per_s", "scaling_time_ratio"):
    assert math.isfinite(res[key]) and res[key] > 0, key
  assert all(m > 0 for m in res["scaling_peak_mib"]) and res["scaling_uids"] == [4]
  assert png.stat().st_size > 1000
  # the per-phase table (issue 10): every phase of network_step, shares of their sum
  phases = res["phases"]
  assert list(phases) == ["exchange", "train", "query", "score", "weights", "chain", "metrics",
                          "evaluate", "register", "step"]
  assert sum(v["share"] for k, v in phases.items() if k != "step") == pytest.approx(1)
  assert all(v["idle_s"] > 0 and v["due_s"] > 0 for v in phases.values())
  # FLOPs per block are the model arithmetic a block runs, not XLA's count of the call
  cfg = network.preset_config("tiny")
  flops = network.model_flops_per_block(cfg)
  assert res["tiny_model_flops_per_block"] == pytest.approx(flops["total"])
  assert flops["train"] == cfg.local_steps * bittensor_network.num_models(cfg) * flops[
      "train_step"] > 0
  assert res["tiny_flops_per_s"] == pytest.approx(flops["total"] * res["tiny_blocks_per_s"])


@pytest.mark.parametrize("args, field", [(["--only", "nothing"], "--only"),
                                         (["--devices", "-1"], "--devices"),
                                         (["--devices", str(jax.device_count() + 1)], "--devices")])
def test_a_bad_flag_exits_2(args, field, capsys):
  with pytest.raises(SystemExit) as e:
    run.main(args)
  assert e.value.code == 2
  assert field in capsys.readouterr().err


# baseline -> (its input from numpy_epoch.to_numpy, its epoch)
BASELINES = {"numpy": (lambda host: host, numpy_epoch.epoch),
             "torch": (torch_epoch.from_numpy, torch_epoch.epoch)}


@pytest.mark.parametrize("baseline", ["numpy", "torch"])
@pytest.mark.parametrize("yuma3", [False, True])
def test_baseline_epoch_gives_the_jax_answers(baseline, yuma3):
  """The NumPy baseline and the torch peer are the same epoch: classic and Yuma3 with liquid
  alpha, an owner, in float64 and float32; and the check that guards the timing notices a wrong
  answer. The torch case needs the `bench` extra (skipped without torch)."""
  if baseline == "torch" and not torch_epoch.available():
    pytest.skip("torch is not installed (the `bench` extra)")
  prepare, epoch = BASELINES[baseline]
  subs = consensus.make_subnets(2, 12, 4, seed=3, yuma3=yuma3, liquid=yuma3)
  sub = jax.tree.map(lambda x: x[1], subs)
  sub = sub.replace(hyper=sub.hyper.replace(subnet_owner_uid=jnp.asarray(7, jnp.int64)),
                    stake_N=sub.stake_N.at[7].set(5e9))
  host = prepare(numpy_epoch.to_numpy(sub))
  for dt in (jnp.float64, jnp.float32):
    _, want = yuma.epoch(sub, consensus.E, dtype=dt)
    got = epoch(host, consensus.E, np.dtype(dt))
    consensus._check_same(baseline, want, got, dt)  # pylint: disable=protected-access
  got["dividends_N"] = got["dividends_N"][::-1]
  with pytest.raises(AssertionError, match="dividends_N"):
    consensus._check_same(baseline, want, got, jnp.float32)  # pylint: disable=protected-access


def test_numpy_epoch_refuses_commit_reveal():
  sub = ledger.subnet_from_neurons(np.ones(3), np.zeros(3, int), np.ones(3, int), np.ones(3, bool),
                                   hyper=ledger.Hyper.create(commit_reveal_weights_enabled=True))
  with pytest.raises(ValueError, match="commit_reveal_weights_enabled"):
    numpy_epoch.to_numpy(sub)
