"""Results as pandas tables: the metagraph of a state and the history of a run, long format.

  frame = export.history_frame("runs/demo")      # epoch, block, uid, role, behaviour, field, value
  frame.pivot_table(index="epoch", columns="uid", values="value").loc[...]
  export.write("runs/demo", "csv")                # history.csv + metagraph.csv in the workdir

Per-uid fields ([E,N]: stake, incentive, ...; [E,K]: train_loss, mapped to the server uids) give
one row per (epoch, uid); per-epoch fields ([E]: ensemble_loss, total_issuance, ...) one row per
epoch with uid -1 and role "network". The matrices (weights, bonds [E,N,N]) and the per-kind
deregistration counts stay in the history (`history.read`); `weights_frame` gives W or B of one
epoch as a table.
"""
from __future__ import annotations

import json
import pathlib

import numpy as np
import pandas as pd

from bittensor_jax import config as config_lib
from bittensor_jax import history, network

# btcli's `subnets metagraph` column names where we have the quantity (rank and trust are gone
# from the current epoch; axon, hotkey and coldkey do not exist in a simulation).
METAGRAPH_COLUMNS = ("UID", "ROLE", "BEHAVIOUR", "STAKE(τ)", "CONSENSUS", "INCENTIVE",
                     "DIVIDENDS", "EMISSION(τ)", "VTRUST", "VAL", "UPDATED", "ACTIVE", "REG_BLOCK")
FORMATS = ("csv", "parquet")


def _behaviour_names(cfg: network.NetworkConfig, behaviour_K) -> list[str]:
  vb = cfg.validator_behaviours()
  return ([network.VALIDATOR_BEHAVIOURS[b] for b in vb] +
          [network.BEHAVIOURS[int(b)] for b in np.asarray(behaviour_K)])


def subnet_row(subnet) -> dict:
  """A `ledger.Subnet` as the history's row names (host numpy arrays)."""
  get = np.asarray
  return {"stake": get(subnet.stake_N), "consensus": get(subnet.consensus_N),
          "incentive": get(subnet.incentive_N), "dividends": get(subnet.dividends_N),
          "emission": get(subnet.emission_N), "validator_trust": get(subnet.validator_trust_N),
          "validator_permit": get(subnet.permit_N), "active": get(subnet.active_N),
          "registered_at": get(subnet.registered_at_N), "block": get(subnet.block),
          "last_update": get(subnet.last_update_N)}


def metagraph_frame(cfg: network.NetworkConfig, row: dict, behaviour_K) -> pd.DataFrame:
  """The metagraph as btcli shows it, one row per uid.

  Args:
    cfg: the network config (it says which uids are validators and how they behave).
    row: arrays by history name (`subnet_row(subnet)` or one history row): stake, consensus,
      incentive, dividends, emission, validator_trust, validator_permit, active, registered_at,
      block, and optionally last_update.
    behaviour_K: i32[K] the servers' behaviour codes (`NetworkState.behaviour_K`).

  Returns:
    A DataFrame with `METAGRAPH_COLUMNS` (UPDATED only when last_update is given): stake and
    emission in TAO, I D C Tv in [0, 1], VAL the validator permit, UPDATED blocks since the uid
    last set weights, REG_BLOCK the block its current occupant registered (0 = from the start).
  """
  N, V = cfg.num_uids, cfg.num_validators  # pylint: disable=invalid-name
  get = np.asarray
  columns = {
      "UID": np.arange(N),
      "ROLE": np.where(np.arange(N) < V, "validator", "server"),
      "BEHAVIOUR": _behaviour_names(cfg, behaviour_K),
      "STAKE(τ)": get(row["stake"]) / network.RAO,
      "CONSENSUS": get(row["consensus"]),
      "INCENTIVE": get(row["incentive"]),
      "DIVIDENDS": get(row["dividends"]),
      "EMISSION(τ)": get(row["emission"]) / network.RAO,
      "VTRUST": get(row["validator_trust"]),
      "VAL": get(row["validator_permit"]).astype(bool),
      "ACTIVE": get(row["active"]).astype(bool),
      "REG_BLOCK": get(row["registered_at"]),
  }
  if row.get("last_update") is not None:
    columns["UPDATED"] = int(get(row["block"])) - get(row["last_update"])
  return pd.DataFrame(columns, columns=[c for c in METAGRAPH_COLUMNS if c in columns])


def format_metagraph(frame: pd.DataFrame) -> str:
  """The metagraph frame as fixed-width text (4 decimals, stake 3)."""
  formatters = {c: "{:.4f}".format for c in ("CONSENSUS", "INCENTIVE", "DIVIDENDS", "VTRUST",
                                             "EMISSION(τ)")}
  formatters["STAKE(τ)"] = "{:,.3f}".format
  return frame.to_string(index=False, formatters=formatters)


def load_network_config(workdir) -> network.NetworkConfig:
  """The NetworkConfig of a run, from its config.json."""
  path = pathlib.Path(workdir) / "config.json"
  if not path.is_file():
    raise ValueError(f"{workdir} has no config.json; is it a run directory?")
  return config_lib.network_config(json.loads(path.read_text()))


def history_frame(workdir, fields=None) -> pd.DataFrame:
  """The history of a run in long format.

  Args:
    workdir: the run directory (str or Path), holding config.json and history/.
    fields: names or metagraph letters to include (default: every per-uid and per-epoch field).

  Returns:
    A DataFrame with columns epoch, block, uid, role ("validator", "server" or "network"),
    behaviour (what held the uid in that epoch: honest, noise, offline, copier servers; honest,
    lazy, cabal validators; "" for network rows), field and value (float64).

  Raises:
    ValueError: no such run, or an unknown field (the message lists the known ones).
  """
  workdir = pathlib.Path(workdir)
  cfg = load_network_config(workdir)
  path = workdir / "history"
  known = history.fields(path)
  V, K = cfg.num_validators, cfg.num_servers  # pylint: disable=invalid-name
  if fields is None:
    names = [n for n, (shape, _) in known.items()
             if shape in ((), (cfg.num_uids,), (K,)) and n not in ("role", "behaviour")]
  else:
    names = [history.resolve(path, f) for f in fields]
  blocks = history.read(path, "block")
  behaviour_ExK = history.read(path, "behaviour")
  E = blocks.shape[0]  # pylint: disable=invalid-name
  vnames = np.array([network.VALIDATOR_BEHAVIOURS[b] for b in cfg.validator_behaviours()])
  behaviour_ExN = np.concatenate(
      [np.broadcast_to(vnames, (E, V)),
       np.asarray(network.BEHAVIOURS)[np.asarray(behaviour_ExK, int)].reshape(E, K)], axis=1)
  role_N = np.where(np.arange(cfg.num_uids) < V, "validator", "server")
  parts = []
  for name in names:
    shape = known[name][0]
    values = np.asarray(history.read(path, name), np.float64)
    if shape == ():
      parts.append(pd.DataFrame({"epoch": np.arange(E), "block": blocks, "uid": -1,
                                 "role": "network", "behaviour": "", "field": name,
                                 "value": values}))
      continue
    uids = np.arange(cfg.num_uids) if shape == (cfg.num_uids,) else np.arange(V, V + K)
    if len(shape) != 1:
      raise ValueError(f"history field {name!r} has shape {shape}; use weights_frame for "
                       f"matrices")
    epoch_ExU = np.repeat(np.arange(E), len(uids))
    parts.append(pd.DataFrame({
        "epoch": epoch_ExU, "block": np.repeat(blocks, len(uids)),
        "uid": np.tile(uids, E), "role": np.tile(role_N[uids], E),
        "behaviour": behaviour_ExN[:, uids].ravel(), "field": name,
        "value": values.reshape(E * len(uids))}))
  if not parts:
    return pd.DataFrame(columns=["epoch", "block", "uid", "role", "behaviour", "field", "value"])
  return pd.concat(parts, ignore_index=True)


def weights_frame(workdir, field: str = "W", epoch: int = -1) -> pd.DataFrame:
  """One epoch of the weights (W) or bonds (B) matrix as a table, u16 (rows: setting uid)."""
  path = pathlib.Path(workdir) / "history"
  name = history.resolve(path, field)
  count = history.num_epochs(path)
  epoch = epoch % count if count else 0
  matrix = history.read(path, name, epoch, epoch + 1)[0]
  frame = pd.DataFrame(matrix)
  frame.index.name, frame.columns.name = "uid", "target uid"
  return frame


def write(workdir, fmt: str = "csv", out_dir=None) -> list[pathlib.Path]:
  """Writes history.<fmt> (long format) and metagraph.<fmt> (the last epoch) for a run.

  Args:
    workdir: the run directory.
    fmt: "csv" or "parquet" (parquet needs pyarrow).
    out_dir: where to write (default: the workdir).

  Returns:
    The paths written.

  Raises:
    ValueError: an unknown format, or a workdir that is not a run.
  """
  if fmt not in FORMATS:
    raise ValueError(f"format: {fmt!r} is not one of {FORMATS}")
  workdir = pathlib.Path(workdir)
  out = pathlib.Path(out_dir) if out_dir else workdir
  out.mkdir(parents=True, exist_ok=True)
  frames = {"history": history_frame(workdir), "metagraph": last_metagraph_frame(workdir)}
  paths = []
  for name, frame in frames.items():
    path = out / f"{name}.{fmt}"
    if fmt == "csv":
      frame.to_csv(path, index=False)
    else:
      frame.to_parquet(path, index=False)
    paths.append(path)
  return paths


def last_metagraph_frame(workdir) -> pd.DataFrame:
  """The metagraph of a run's last recorded epoch, from its history (no checkpoint needed)."""
  workdir = pathlib.Path(workdir)
  cfg = load_network_config(workdir)
  path = workdir / "history"
  count = history.num_epochs(path)
  if count == 0:
    raise ValueError(f"{path} holds no epochs yet")
  row = {k: v[0] for k, v in history.read_all(path, count - 1).items()}
  return metagraph_frame(cfg, row, row["behaviour"])  # UPDATED: last_update is not recorded
