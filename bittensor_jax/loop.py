"""The training loop: side effects only (config.json, checkpoints, history, progress, summary).

`train_and_evaluate(config, workdir)` runs a network epoch by epoch, one compiled call of
`run.blocks_per_call` blocks each (`Network.run`, a `lax.scan`), and leaves in `workdir`:

  config.json     the ConfigDict; a resumed run must agree with it (only `run.blocks` may grow,
                  and the logging / checkpointing cadence may change)
  history/        one row per epoch (`history.HistoryWriter`), fields in `history_fields`
  checkpoints/    the state every `run.checkpoint_every_epochs` epochs and at the end
  summary.json    headline metrics of the last epoch (`SUMMARY_KEYS` and more)

Resuming is bit-exact: the state holds the PRNG key, the network is a pure function of it, and
the history row of an epoch is written before that epoch's checkpoint, so a run killed at any
moment restarts from its newest valid checkpoint and rewrites (`HistoryWriter.append` truncates)
any epochs after it. States are put on the network's canonical shardings before every call, so
a resumed run executes the same compiled program as an uninterrupted one.

History fields (E epochs, N uids, K servers), the metagraph letters spelled as words:
  stake (S, rao), weights (W, u16), bonds (B, u16), consensus (C), validator_trust (Tv),
  incentive (I), dividends (D), emission (E, rao), active, validator_permit, registered_at [E,N];
  quality [E,N] (true held-out loss of each server, mean over the epoch's blocks; nan for
  validators); train_loss [E,K]; ensemble_loss, best_server_loss, isolated_server_loss [E] (means
  over the epoch's blocks); registrations, deregistrations [E] (counts in the epoch);
  deregistrations_by_kind [E,5] (honest, noise, offline, copier servers, validators);
  weights_rejected [E,N]; block, total_issuance, pending_emission [E]; role [E,N] (0 server,
  1 validator); behaviour [E,K] (server behaviour codes, `network.BEHAVIOURS`);
  the latest test-split evaluation (`evaluation.py`, every `network.eval_every` blocks):
  test_loss, test_se, test_acc, twin_loss [E,K] (nats/byte; a server's twin's loss, nan without
  one), test_ensemble_loss, test_ensemble_se, test_ensemble_acc, test_block [E].
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import logging as py_logging
import math
import os
import pathlib
import shutil
import socket
import sys
import time
from typing import Any, Sequence

import jax
import ml_collections
import numpy as np
import tqdm
from absl import logging

from bittensor_jax import checkpoint, distributed, export, history, network, plots
from bittensor_jax import config as config_lib

SUMMARY_KEYS = ("ensemble_loss", "best_server_loss", "isolated_server_loss",
                "quality_incentive_spearman", "deregistrations", "total_issuance_rao", "blocks",
                "blocks_per_second", "honest_stake_share", "participation_gain",
                "participation_gain_all", "honest_servers_earning", "top_incentive_share",
                "copier_incentive_ratio", "newcomers_earning", "ngram_loss", "test_tokens")
RATE_EPOCHS = 10  # summary rates are means over the last 10 epochs
EARNING = 0.01    # an incentive above this is "earning"
DEREG_KINDS = ("honest", "noise", "offline", "copier", "validator")
# Fields of config.json that may differ when resuming a workdir (they change no state).
RESUMABLE_CHANGES = ("run.blocks", "run.checkpoint_every_epochs", "run.keep_checkpoints",
                     "run.log_every_epochs")


def _flatten(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def _as_json(c) -> dict:
  d = c.to_dict() if isinstance(c, ml_collections.ConfigDict) else dict(c)
  return json.loads(json.dumps(d))  # tuples -> lists, as config.json stores them


def _write_json(path: pathlib.Path, obj) -> None:
  """Atomic JSON write (tmp file, fsync, rename)."""
  tmp = path.with_name(f".{path.name}.tmp")
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def check_resumable(saved: dict, new: dict) -> None:
  """Raises ValueError unless `new` may continue a run started with `saved` (config dicts)."""
  a, b = _flatten(saved), _flatten(new)
  diffs = sorted(k for k in set(a) | set(b) if a.get(k, "<missing>") != b.get(k, "<missing>"))
  bad = [k for k in diffs if k not in RESUMABLE_CHANGES]
  if bad:
    details = "; ".join(f"{k}: saved {a.get(k, '<missing>')!r}, now {b.get(k, '<missing>')!r}"
                        for k in bad[:5])
    raise ValueError(f"workdir holds a run with a different config ({details}). Only "
                     f"{', '.join(RESUMABLE_CHANGES)} may change when resuming; use a new "
                     f"--workdir.")


def history_fields(cfg: network.NetworkConfig) -> dict:
  """{field: (per-epoch shape, dtype)} of the history of a run of `cfg`."""
  N, K = cfg.num_uids, cfg.num_servers  # pylint: disable=invalid-name
  f64, i64, i32 = np.float64, np.int64, np.int32
  return {
      "stake": ((N,), f64), "weights": ((N, N), i32), "bonds": ((N, N), i32),
      "consensus": ((N,), f64), "validator_trust": ((N,), f64), "incentive": ((N,), f64),
      "dividends": ((N,), f64), "emission": ((N,), i64), "active": ((N,), bool),
      "validator_permit": ((N,), bool), "registered_at": ((N,), i64),
      "quality": ((N,), f64), "train_loss": ((K,), f64), "ensemble_loss": ((), f64),
      "best_server_loss": ((), f64), "isolated_server_loss": ((), f64),
      "registrations": ((), i64), "deregistrations": ((), i64),
      "deregistrations_by_kind": ((5,), i64), "weights_rejected": ((N,), i64),
      "block": ((), i64), "total_issuance": ((), i64), "pending_emission": ((), i64),
      "role": ((N,), i32), "behaviour": ((K,), i32),
      "test_loss": ((K,), f64), "test_se": ((K,), f64), "test_acc": ((K,), f64),
      "twin_loss": ((K,), f64), "test_ensemble_loss": ((), f64),
      "test_ensemble_se": ((), f64), "test_ensemble_acc": ((), f64), "test_block": ((), i64),
  }


def _epoch_row(cfg: network.NetworkConfig, state: network.NetworkState, metrics: dict,
               before: tuple[int, np.ndarray]) -> dict:
  """One history row from the state after an epoch and the epoch's stacked block metrics."""
  V = cfg.num_validators  # pylint: disable=invalid-name
  sub = distributed.gather(state.subnet)
  m = distributed.gather(metrics)
  regs, dereg = int(state.registrations), np.asarray(state.deregistered_5, np.int64)
  quality = np.full(cfg.num_uids, np.nan)
  quality[V:] = np.asarray(m["quality_K"], np.float64).mean(0)
  mean = lambda key: float(np.asarray(m[key], np.float64).mean())
  return {
      # the ledger keeps weights and bonds on R validator rows: the history stores the dense
      # N x N view (docs/chain.md §1.16), expanded here on the host
      "stake": sub.stake_N, "weights": np.asarray(sub.weights_NxN),
      "bonds": np.asarray(sub.bonds_NxN),
      "consensus": sub.consensus_N, "validator_trust": sub.validator_trust_N,
      "incentive": sub.incentive_N, "dividends": sub.dividends_N, "emission": sub.emission_N,
      "active": sub.active_N, "validator_permit": sub.permit_N,
      "registered_at": sub.registered_at_N, "quality": quality,
      "train_loss": np.asarray(m["train_loss_M"], np.float64)[:, :cfg.num_servers].mean(0),
      "ensemble_loss": mean("ensemble_loss"), "best_server_loss": mean("best_server_loss"),
      "isolated_server_loss": mean("isolated_server_loss"),
      "registrations": regs - before[0], "deregistrations": int((dereg - before[1]).sum()),
      "deregistrations_by_kind": dereg - before[1],
      "weights_rejected": (np.asarray(m["weights_rejected_N"]) != 0).sum(0),
      "block": sub.block, "total_issuance": sub.total_issuance,
      "pending_emission": sub.pending_emission,
      "role": (np.arange(cfg.num_uids) < V).astype(np.int32),
      "behaviour": np.asarray(state.behaviour_K),
      **_test_row(cfg, state),
  }


def _test_row(cfg: network.NetworkConfig, state: network.NetworkState) -> dict:
  """The history fields of the state's latest test-split evaluation."""
  K = cfg.num_servers  # pylint: disable=invalid-name
  t = jax.tree.map(lambda a: np.asarray(a, np.float64), distributed.gather(state.test))
  twin_K = network.twin_models(cfg)
  twin_loss = np.where(twin_K >= 0, t["loss_M"][np.maximum(twin_K, 0)], np.nan)
  return {"test_loss": t["loss_M"][:K], "test_se": t["se_M"][:K], "test_acc": t["acc_M"][:K],
          "twin_loss": twin_loss, "test_ensemble_loss": float(t["ensemble_loss"]),
          "test_ensemble_se": float(t["ensemble_se"]),
          "test_ensemble_acc": float(t["ensemble_acc"]), "test_block": int(state.test_block)}


def restore_latest(cfg: network.NetworkConfig, workdir, num_devices: int | None = None):
  """The newest valid checkpoint of a run: (epoch, state, meta), or None.

  Arrays come back on the default device; `Network.shard` puts them on a mesh.

  Args:
    cfg: the run's network config.
    workdir: the run's workdir.
    num_devices: the device count the run used (it pads the model axis); default all devices.
  """
  ckpt_dir = pathlib.Path(workdir) / "checkpoints"
  if not ckpt_dir.is_dir():
    return None
  ckpts = checkpoint.Checkpoints(ckpt_dir)
  try:
    if not ckpts.all_steps():
      return None
    num_devices = num_devices or jax.device_count()
    # a concrete template: init_state is not abstractly traceable (Hyper.create checks values)
    return ckpts.restore(network.init_state(cfg, num_devices))
  finally:
    ckpts.close()


def _finite(x) -> float | None:
  x = float(x)
  return x if math.isfinite(x) else None


def value_summary(cfg: network.NetworkConfig, h: dict) -> dict:
  """The knowledge-exchange and valuation keys of summary.json, from a run's history.

  Definitions (issue 9). A server is the neuron holding a slot at the end (its `registered_at`);
  its mean incentive is over the last `RATE_EPOCHS` epochs in which it held the slot; honest =
  behaviour honest; losses are the final test-split evaluation (nats per byte).

    participation_gain      median over honest servers registered for at least half the run of
                            (twin loss - server loss); null without twins
    participation_gain_all  the same over every honest server registered at the end
    honest_servers_earning  fraction of honest servers at the end whose mean incentive > 0.01
    top_incentive_share     the largest mean incentive of any server
    copier_incentive_ratio  the copiers' mean incentive over the epochs in which a copier was
                            registered, over the median honest server's mean incentive over the
                            same epochs (null only if no copier was ever registered)
    newcomers_earning       fraction of the honest newcomers (registered after block 0) whose
                            immunity ended within the run and whose incentive exceeded 0.01 at
                            some epoch before it ended (null if there was none)

  Args:
    cfg: the network config.
    h: the history ({field: [E, ...]}, `history.read_all`).

  Returns:
    {key: float or None}.
  """
  V, K = cfg.num_validators, cfg.num_servers  # pylint: disable=invalid-name
  inc_ExK = np.asarray(h["incentive"], np.float64)[:, V:]
  reg_ExK = np.asarray(h["registered_at"], np.int64)[:, V:]
  beh_ExK = np.asarray(h["behaviour"])
  block_E = np.asarray(h["block"], np.int64)
  E = len(block_E)  # pylint: disable=invalid-name
  last = slice(max(E - RATE_EPOCHS, 0), E)
  held_ExK = reg_ExK == reg_ExK[-1][None]
  held = held_ExK[last]
  mean_inc_K = np.where(held.any(0), np.where(held, inc_ExK[last], 0).sum(0)
                        / np.maximum(held.sum(0), 1), inc_ExK[-1])
  honest_K = beh_ExK[-1] == network.HONEST
  gain_K = np.asarray(h["twin_loss"], np.float64)[-1] - np.asarray(h["test_loss"],
                                                                    np.float64)[-1]
  blocks = int(block_E[-1])
  veteran_K = honest_K & (blocks - reg_ExK[-1] >= blocks / 2)
  med = lambda x: _finite(np.median(x[np.isfinite(x)])) if np.isfinite(x).any() else None  # noqa
  out = {
      "participation_gain": med(gain_K[veteran_K]),
      "participation_gain_all": med(gain_K[honest_K]),
      "honest_servers_earning": _finite((mean_inc_K[honest_K] > EARNING).mean())
                                if honest_K.any() else None,
      "top_incentive_share": float(mean_inc_K.max()),
  }
  copier_ExK = beh_ExK == network.COPIER
  with_copier = copier_ExK.any(1)
  if with_copier.any():
    cop = inc_ExK[with_copier][copier_ExK[with_copier]].mean()
    hon = beh_ExK[with_copier] == network.HONEST
    per_k = np.where(hon, inc_ExK[with_copier], 0).sum(0) / np.maximum(hon.sum(0), 1)
    honest_median = float(np.median(per_k[hon.any(0)])) if hon.any() else 0.0
    out["copier_incentive_ratio"] = (float(cop / honest_median) if honest_median > 0 else
                                     (0.0 if cop == 0 else math.inf))
  else:
    out["copier_incentive_ratio"] = None
  judged, earned = 0, 0
  for k in range(K):
    for r in np.unique(reg_ExK[:, k]):
      if r <= 0 or r + cfg.immunity_period > blocks:
        continue
      mine = (reg_ExK[:, k] == r) & (block_E < r + cfg.immunity_period)
      if not (beh_ExK[mine, k] == network.HONEST).all():
        continue
      judged += 1
      earned += bool((inc_ExK[mine, k] > EARNING).any())
  out["newcomers_earning"] = earned / judged if judged else None
  return out


def server_table(cfg: network.NetworkConfig, h: dict) -> list[dict]:
  """Per server at the end: uid, behaviour, age (blocks), test loss, its twin's test loss,
  mean incentive (over the last `RATE_EPOCHS` epochs it held the slot)."""
  V = cfg.num_validators  # pylint: disable=invalid-name
  inc_ExK = np.asarray(h["incentive"], np.float64)[:, V:]
  reg_ExK = np.asarray(h["registered_at"], np.int64)[:, V:]
  E = inc_ExK.shape[0]  # pylint: disable=invalid-name
  held = (reg_ExK == reg_ExK[-1][None])[max(E - RATE_EPOCHS, 0):]
  mean_inc = np.where(held, inc_ExK[max(E - RATE_EPOCHS, 0):], 0).sum(0) / np.maximum(
      held.sum(0), 1)
  blocks = int(np.asarray(h["block"])[-1])
  return [{"uid": V + k, "behaviour": network.BEHAVIOURS[int(h["behaviour"][-1][k])],
           "age": blocks - int(reg_ExK[-1, k]),
           "test_loss": _finite(h["test_loss"][-1][k]), "twin_loss": _finite(h["twin_loss"][-1][k]),
           "incentive": float(mean_inc[k])} for k in range(cfg.num_servers)]


def format_server_table(rows: list[dict]) -> str:
  """The per-server table as text."""
  fmt = lambda x: "-" if x is None else f"{x:.4f}"  # noqa: E731
  lines = [f"{'uid':>4} {'behaviour':>9} {'age':>6} {'test_loss':>9} {'twin_loss':>9} "
           f"{'incentive':>9}"]
  lines += [f"{r['uid']:>4} {r['behaviour']:>9} {r['age']:>6} {fmt(r['test_loss']):>9} "
            f"{fmt(r['twin_loss']):>9} {fmt(r['incentive']):>9}" for r in rows]
  return "\n".join(lines)


def summarize(cfg: network.NetworkConfig, state: network.NetworkState, last: dict,
              hist: dict | None = None, baseline: dict | None = None) -> dict:
  """Headline metrics from the final state, the last history row and the whole history.

  `ensemble_loss`, `best_server_loss` (the best honest server) and `isolated_server_loss` (the
  median twin of the honest servers) are on the test split (the latest evaluation); the same on
  the validators' query text, averaged over the last epoch's blocks, are `query_*`.

  Args:
    cfg: the network config.
    state: the final state.
    last: the last epoch's history row ({field: array}).
    hist: the whole history (`history.read_all`); without it the valuation keys are None.
    baseline: `Network.ngram_baseline()` (ngram_loss, test_tokens); None leaves them None.

  Returns:
    A JSON-ready dict with `SUMMARY_KEYS` (blocks_per_second is left to the caller) and more.
  """
  V = cfg.num_validators  # pylint: disable=invalid-name
  quality_K = np.asarray(last["quality"], np.float64)[V:]
  incentive_K = np.asarray(last["incentive"], np.float64)[V:]
  dereg = np.asarray(jax.device_get(state.deregistered_5)).tolist()
  stake_V = np.asarray(jax.device_get(state.subnet.stake_N), np.float64)[:V]
  honest_V = cfg.validator_behaviours() == network.V_HONEST
  total_v = stake_V.sum()
  honest_K = np.asarray(last["behaviour"]) == network.HONEST
  test_K = np.asarray(last["test_loss"], np.float64)
  twin_K = np.asarray(last["twin_loss"], np.float64)
  ok = honest_K & np.isfinite(test_K)
  best = int(np.flatnonzero(ok)[np.argmin(test_K[ok])]) if ok.any() else 0
  twins = twin_K[honest_K & np.isfinite(twin_K)]
  out = {
      "ensemble_loss": _finite(last["test_ensemble_loss"]),
      "ensemble_se": _finite(last["test_ensemble_se"]),
      "ensemble_accuracy": _finite(last["test_ensemble_acc"]),
      "ensemble_bits_per_byte": _finite(float(last["test_ensemble_loss"]) / math.log(2)),
      "best_server_loss": _finite(test_K[best]) if ok.any() else None,
      "best_server_uid": V + best,
      "isolated_server_loss": _finite(np.median(twins)) if len(twins) else None,
      "test_block": int(last["test_block"]),
      "query_ensemble_loss": float(last["ensemble_loss"]),
      "query_best_server_loss": float(last["best_server_loss"]),
      "query_isolated_server_loss": _finite(last["isolated_server_loss"]),
      "quality_incentive_spearman": plots.spearman(-quality_K, incentive_K),
      "deregistrations": {"total": int(sum(dereg)), **dict(zip(DEREG_KINDS, map(int, dereg)))},
      "registrations": int(state.registrations),
      "total_issuance_rao": int(state.subnet.total_issuance),
      "total_issuance_tao": int(state.subnet.total_issuance) / network.RAO,
      "retired_stake_rao": float(state.retired_stake),
      "blocks": int(state.subnet.block),
      "honest_stake_share": float(stake_V[honest_V].sum() / total_v) if total_v > 0 else math.nan,
      "final_incentive": incentive_K.tolist(),
      "final_quality": quality_K.tolist(),
      "final_consensus": np.asarray(last["consensus"], np.float64)[V:].tolist(),
      "validators": _validator_rows(cfg, state),
      "exchange": cfg.exchange, "scoring": cfg.scoring,
      "ngram_loss": None if baseline is None else baseline["loss"],
      "ngram_order": cfg.ngram_order,
      "test_tokens": None if baseline is None else baseline["test_tokens"],
  }
  keys = ("participation_gain", "participation_gain_all", "honest_servers_earning",
          "top_incentive_share", "copier_incentive_ratio", "newcomers_earning")
  out.update(value_summary(cfg, hist) if hist else dict.fromkeys(keys))
  if hist:
    out["servers"] = server_table(cfg, hist)
  return out


def _validator_rows(cfg: network.NetworkConfig, state: network.NetworkState) -> list[dict]:
  """Per validator: uid, behaviour, stake (TAO), dividends, vtrust, registered_at (last epoch)."""
  sub = jax.device_get(state.subnet)
  vb = cfg.validator_behaviours()
  return [{"uid": v, "behaviour": network.VALIDATOR_BEHAVIOURS[vb[v]],
           "stake_tao": float(sub.stake_N[v]) / network.RAO,
           "dividends": float(sub.dividends_N[v]), "vtrust": float(sub.validator_trust_N[v]),
           "registered_at": int(sub.registered_at_N[v])} for v in range(cfg.num_validators)]


def metagraph_table(cfg: network.NetworkConfig, state: network.NetworkState) -> str:
  """The metagraph as btcli's columns (`export.METAGRAPH_COLUMNS`), as text."""
  sub = jax.device_get(state.subnet)
  frame = export.metagraph_frame(cfg, export.subnet_row(sub), jax.device_get(state.behaviour_K))
  return export.format_metagraph(frame)


def read_history(workdir) -> dict:
  """The history of a run as `plots.plot_dashboard` wants it (adds server_loss [E,K])."""
  h = history.read_all(pathlib.Path(workdir) / "history")
  if "quality" in h and "role" in h and len(h["role"]):
    h["server_loss"] = h["quality"][:, h["role"][-1] == plots.SERVER]
  config_file = pathlib.Path(workdir) / "config.json"
  if config_file.is_file():
    cfg = config_lib.network_config(json.loads(config_file.read_text()))
    h["validator_behaviour"] = [network.VALIDATOR_BEHAVIOURS[b]
                                for b in cfg.validator_behaviours()]
  return h


def describe(workdir) -> str:
  """A one-line title for a run's figures: preset-level settings from its config.json."""
  config_file = pathlib.Path(workdir) / "config.json"
  if not config_file.is_file():
    return str(workdir)
  c = json.loads(config_file.read_text())
  cfg = config_lib.network_config(c)
  parts = [f"{cfg.num_validators} validators"]
  if cfg.lazy_validators or cfg.cabal_validators:
    parts[-1] += f" ({cfg.lazy_validators} lazy, {cfg.cabal_validators} cabal)"
  parts.append(f"{cfg.num_servers} servers ({cfg.noise_servers} noise, {cfg.offline_servers} "
               f"offline, {cfg.copier_servers} copier)")
  parts.append(f"{'Yuma3' if cfg.yuma3 else 'classic Yuma'}"
               f"{' + liquid alpha' if cfg.liquid_alpha else ''}, kappa {cfg.u16('kappa')}/65535")
  parts.append(f"exchange {cfg.exchange}, scoring {cfg.scoring}")
  parts.append(f"width {cfg.model.width} depth {cfg.model.depth}, {c['run']['blocks']} blocks")
  return f"{pathlib.Path(workdir).name}: " + ", ".join(parts)


class _QuietOrbax(py_logging.Filter):
  """Drops orbax's per-save INFO chatter (tens of lines per checkpoint); warnings pass."""

  def filter(self, record: py_logging.LogRecord) -> bool:
    return record.levelno >= py_logging.WARNING or "/orbax/" not in record.pathname


def _quiet_orbax() -> None:
  handler = logging.get_absl_handler()
  if not any(isinstance(f, _QuietOrbax) for f in handler.filters):
    handler.addFilter(_QuietOrbax())


def quiet_console() -> None:
  """No per-save orbax chatter and no "Unable to initialize backend 'tpu'" INFO line on CPU/GPU.

  Call it before jax first touches a backend (scripts do it at the top of main).
  """
  _quiet_orbax()
  py_logging.getLogger("jax._src.xla_bridge").setLevel(py_logging.WARNING)


class _TqdmStream:
  """A stream that writes through `tqdm.write`, so log lines never share a line with a bar."""

  def __init__(self, stream):
    self.stream = stream

  def write(self, text: str) -> None:
    if text.strip():
      tqdm.tqdm.write(text.rstrip("\n"), file=self.stream)

  def flush(self) -> None:
    self.stream.flush()


@contextlib.contextmanager
def _logging_around_tqdm():
  """Routes absl's log lines through `tqdm.write`, so they never share a line with the bar.

  `tqdm.contrib.logging.logging_redirect_tqdm` only replaces plain console StreamHandlers; absl's
  handler wraps one, so that context adds a second handler to the root logger and every line is
  printed twice (and orbax's INFO chatter escapes our filter). The stream inside absl's handler
  is routed through `tqdm.write` instead, which is what tqdm's handler does.
  """
  absl_handler = logging.get_absl_handler().python_handler
  old = absl_handler.stream
  absl_handler.stream = _TqdmStream(old)
  try:
    yield
  finally:
    absl_handler.stream = old


class WorkdirLock:
  """An exclusive `flock` on <workdir>/.lock that says who holds it; released on exit or death.

  Raises:
    ValueError: another process holds the lock (the message names its pid, host and start).
  """

  def __init__(self, workdir: pathlib.Path):
    self.path = pathlib.Path(workdir) / ".lock"
    self.file = None

  def __enter__(self):
    self.file = open(self.path, "a+")  # pylint: disable=consider-using-with
    try:
      fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      self.file.seek(0)
      holder = self.file.read().strip() or "another process"
      self.file.close()
      raise ValueError(f"workdir {self.path.parent} is in use by {holder}; wait for it to end "
                       f"or use another --workdir") from None
    self.file.seek(0)
    self.file.truncate()
    self.file.write(f"pid {os.getpid()} on {socket.gethostname()} since "
                    f"{datetime.datetime.now():%Y-%m-%d %H:%M:%S}")
    self.file.flush()
    return self

  def __exit__(self, *exc):
    self.file.close()  # closing releases the flock


def _check_history_covers(workdir: pathlib.Path, ckpts: checkpoint.Checkpoints, template,
                          restored):
  """Repairs a resume whose history holds fewer epochs than the newest checkpoint.

  The loop writes an epoch's history row before its checkpoint, so this only happens when the
  history was truncated or replaced. The newest checkpoint at or before the history's last
  epoch is restored instead (the epochs after it are recomputed bit-exactly); with none kept,
  the resume is refused.
  """
  if restored is None:
    return None
  count = history.num_epochs(workdir / "history")
  if restored[0] <= count:
    return restored
  older = [s for s in ckpts.all_steps() if s <= count]
  if not older:
    raise ValueError(
        f"{workdir}: history/ holds {count} epochs but the oldest kept checkpoint is at epoch "
        f"{min(ckpts.all_steps())}; the summary would mix epochs. Restore the history or use a "
        f"new --workdir.")
  logging.warning("%s: history/ holds %d epochs, the newest checkpoint is at epoch %d: resuming "
                  "from the checkpoint at epoch %d instead", workdir, count, restored[0],
                  max(older))
  return ckpts.restore(template, max_step=count)


def _prepare_workdir(config, workdir: pathlib.Path) -> None:
  """Writes config.json, or checks that a resumed run agrees with the saved one."""
  workdir.mkdir(parents=True, exist_ok=True)
  new = _as_json(config)
  path = workdir / "config.json"
  if path.exists():
    check_resumable(json.loads(path.read_text()), new)
  _write_json(path, new)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir,
                       devices: Sequence[jax.Device] | None = None) -> dict[str, Any]:
  """Runs (or resumes) a network in `workdir` and returns the summary.

  Args:
    config: a ConfigDict like `configs/default.py` returns.
    workdir: the run directory (created if needed; resumed if it holds checkpoints).
    devices: the devices the network is sharded over (default: all, `jax.devices()`). Resume a
      run on as many devices as it started on: their count pads the model axis, and nothing
      checks it yet (on another count no checkpoint restores, and the run starts again).

  Returns:
    The summary dict also written to `workdir/summary.json`.

  Raises:
    ValueError: a bad config value (naming the field), or a workdir holding a run whose config
      differs in a field that changes the run.
  """
  jax.config.update("jax_enable_x64", True)
  quiet_console()
  workdir = pathlib.Path(workdir)
  cfg = config_lib.network_config(config)
  run = config_lib.run_settings(config)
  if cfg.data_dir is not None and not pathlib.Path(cfg.data_dir).is_dir():
    raise ValueError(f"network.data_dir: {cfg.data_dir!r} is not a folder")
  # loads the data: its errors come before the workdir exists
  net = network.Network(cfg, network.make_mesh(devices))
  main = distributed.is_main_process()  # with many processes, one writes the files
  created = not workdir.exists()
  with contextlib.ExitStack() as stack:
    if main:
      workdir.mkdir(parents=True, exist_ok=True)
      try:
        stack.enter_context(WorkdirLock(workdir))
        _prepare_workdir(config, workdir)
      except BaseException:
        if created:
          shutil.rmtree(workdir, ignore_errors=True)
        raise
    try:
      return _train(config, cfg, run, net, workdir, main)
    except BaseException:
      # a run that dies before its first epoch leaves no empty workdir behind
      if main and created and history.num_epochs(workdir / "history") == 0:
        shutil.rmtree(workdir, ignore_errors=True)
      raise


def _train(config, cfg: network.NetworkConfig, run: dict, net: network.Network,
           workdir: pathlib.Path, main: bool) -> dict[str, Any]:
  """The body of `train_and_evaluate`, with the workdir prepared and locked."""
  del config
  ckpts = checkpoint.Checkpoints(workdir / "checkpoints", run["keep_checkpoints"],
                                 run["checkpoint_every_epochs"])
  state = net.init()  # also the restore template (shapes, dtypes, shardings)
  restored = ckpts.restore(state) if ckpts.all_steps() else None
  restored = _check_history_covers(workdir, ckpts, state, restored)
  if restored is None:
    epoch = 0
  else:
    epoch, state, meta = restored
    logging.info("resuming %s from epoch %d (block %s)", workdir, epoch, meta.get("block"))
  block = int(state.subnet.block)
  if block > run["blocks"]:
    raise ValueError(f"run.blocks: {run['blocks']} is less than the {block} blocks already run "
                     f"in {workdir}")
  writer = history.HistoryWriter(workdir / "history", history_fields(cfg)) if main else None
  # smoothing=0: the rate (and ETA) is blocks since the bar's start_t over the time since then;
  # start_t is moved past the first call, so the ETA excludes the compile
  bar = tqdm.tqdm(total=run["blocks"], initial=block, unit="block", file=sys.stderr,
                  mininterval=1.0, dynamic_ncols=True, disable=not main, smoothing=0)
  calls, timed_blocks, timed_seconds, compile_seconds = 0, 0, 0.0, 0.0
  row = None
  with _logging_around_tqdm() if main else contextlib.nullcontext():
    while block < run["blocks"]:
      n = min(run["blocks_per_call"], run["blocks"] - block)
      before = (int(state.registrations), np.asarray(state.deregistered_5, np.int64))
      ckpts.wait()  # `run` donates the state: any save of it must have finished
      start = time.perf_counter()
      state, metrics = net.run(net.shard(state), n, blocks_per_call=n)
      row = _epoch_row(cfg, state, metrics, before)  # pulls to host, so timing is honest
      seconds = time.perf_counter() - start
      if calls:
        timed_blocks, timed_seconds = timed_blocks + n, timed_seconds + seconds
      calls += 1
      block += n
      if writer is not None:
        writer.append(epoch, row)  # before the checkpoint of this epoch (see module docstring)
      epoch += 1
      if block >= run["blocks"] or epoch % run["checkpoint_every_epochs"] == 0:
        ckpts.save(epoch, state, meta={"block": block, "epoch": epoch},
                   force=block >= run["blocks"])
      issuance = int(row["total_issuance"]) / network.RAO
      # in a dtao economy the subnet's ledger counts the alpha emitted to it (docs/economy.md)
      unit = "alpha" if cfg.economy not in ("none", "root") else "TAO"
      bar.set_postfix(epoch=epoch, query_loss=f"{row['ensemble_loss']:.3f}",
                      issuance=f"{issuance:.1f} {unit}", refresh=False)
      if calls == 1:  # the first call compiled: its blocks are counted without a redraw (which
        # would show a rate and ETA that include the compile), then the rate starts after it
        compile_seconds = seconds
        bar.n += n
        bar.initial, bar.start_t = bar.n, bar._time()  # pylint: disable=protected-access
        bar.refresh()
        logging.info("first call (compile + %d blocks): %.1f s; the ETA counts from here", n,
                     seconds)
      else:
        bar.update(n)
      if epoch % run["log_every_epochs"] == 0 or block >= run["blocks"]:
        # the validators' query text of this epoch (summary.json: query_*), not the test split
        logging.info("epoch %d block %d: on the query text, ensemble %.4f best %.4f first twin "
                     "%.4f nats/byte, issuance %.3f TAO, registrations %d", epoch, block,
                     row["ensemble_loss"],
                     row["best_server_loss"], row["isolated_server_loss"], issuance,
                     int(state.registrations))
    bar.close()
  ckpts.wait()
  ckpts.close()
  if row is None:  # nothing left to run: summarize the restored run from its history
    count = history.num_epochs(workdir / "history")
    if count == 0:
      raise ValueError(f"run.blocks: nothing to run and no history in {workdir}")
    if count != epoch:
      raise ValueError(f"{workdir}: history/ holds {count} epochs, the checkpoint is at epoch "
                       f"{epoch}; the summary would mix epochs")
    row = {k: v[0] for k, v in history.read_all(workdir / "history", count - 1).items()}
  hist = history.read_all(workdir / "history") if main else None
  if int(state.test_block) != int(state.subnet.block):  # evaluated every n blocks and at the end
    state = net.evaluate(net.shard(state))
    row = {**row, **_test_row(cfg, state)}
    if hist is not None:
      for key, value in _test_row(cfg, state).items():
        hist[key][-1] = value
  summary = summarize(cfg, state, row, hist, net.ngram_baseline())
  summary["blocks_per_second"] = timed_blocks / timed_seconds if timed_seconds else None
  summary["compile_seconds"] = compile_seconds or None
  previous = workdir / "summary.json"
  if calls == 0 and previous.is_file():  # a finished run summarized again: keep its timing
    try:
      old = json.loads(previous.read_text())
      summary.update({k: old.get(k) for k in ("blocks_per_second", "compile_seconds")})
    except (OSError, ValueError):
      pass
  summary["epochs"] = epoch
  if main:
    _write_json(workdir / "summary.json", summary)
    print(metagraph_table(cfg, state))
    if "servers" in summary:
      print(format_server_table(summary["servers"]))
  logging.info("summary: %s", {k: summary[k] for k in SUMMARY_KEYS})
  return summary
