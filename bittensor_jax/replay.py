r"""Replays scenario files (docs/scenario_format.md) on the simulator's own chain functions.

  python -m bittensor_jax.replay FILE [FILE ...]          # one JSON line per epoch
  python -m bittensor_jax.replay --check FILE [FILE ...]  # also compare with `expect`

Proportions are computed in float64 (the replay turns on `jax_enable_x64`). A malformed file is a
clean error naming the file and the field (exit 2); a mismatch under `--check` names the epoch, the
key and both values (exit 1).
"""
from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
from typing import Any, Iterator

import numpy as np

PROPORTION_KEYS = ("stake", "active_stake", "consensus", "validator_trust", "incentive",
                   "dividends")
AMOUNT_KEYS = ("server_emission", "validator_emission", "emission")
BOOL_KEYS = ("active", "validator_permit")
EXPECT_KEYS = PROPORTION_KEYS + AMOUNT_KEYS + BOOL_KEYS + ("bonds",)
DEFAULT_TOLERANCE = {**{k: 1e-6 for k in PROPORTION_KEYS}, **{k: 2 for k in AMOUNT_KEYS},
                     "bonds": 1}
EVENT_KINDS = ("set_weights", "commit_weights", "register", "add_stake", "reset_bonds", "epoch")
MAX_UIDS = 4096


class ScenarioError(ValueError):
  """A malformed scenario file."""


class CheckFailure(AssertionError):
  """An epoch output that does not match the scenario's expectation."""


def _need(cond: bool, where: str, msg: str) -> None:
  if not cond:
    raise ScenarioError(f"{where}: {msg}")


def _is_num(x) -> bool:
  return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _is_int(x) -> bool:
  return isinstance(x, int) and not isinstance(x, bool)


def validate(doc: Any) -> dict:
  """Checks a parsed scenario against docs/scenario_format.md; ScenarioError names the bad field."""
  _need(isinstance(doc, dict), "scenario", "top level must be a JSON object")
  for key in ("name", "neurons", "events"):
    _need(key in doc, key, "missing")
  _need(isinstance(doc["name"], str), "name", "must be a string")
  hyper = doc.get("hyperparameters", {})
  _need(isinstance(hyper, dict), "hyperparameters", "must be an object")
  neurons = doc["neurons"]
  _need(isinstance(neurons, list) and neurons, "neurons", "must be a non-empty list")
  for i, nrn in enumerate(neurons):
    w = f"neurons[{i}]"
    _need(isinstance(nrn, dict), w, "must be an object")
    for key in ("stake", "registered_at", "last_update"):
      _need(key in nrn, f"{w}.{key}", "missing")
    _need(_is_num(nrn["stake"]) and nrn["stake"] >= 0, f"{w}.stake",
          f"must be a finite nonnegative number, got {nrn['stake']!r}")
    for key in ("registered_at", "last_update"):
      _need(_is_int(nrn[key]) and nrn[key] >= 0, f"{w}.{key}",
            f"must be a nonnegative integer, got {nrn[key]!r}")
    _need(isinstance(nrn.get("validator_permit", False), bool), f"{w}.validator_permit",
          "must be true or false")
  cap = hyper.get("max_allowed_uids", len(neurons))
  _need(_is_int(cap) and len(neurons) <= cap <= MAX_UIDS, "hyperparameters.max_allowed_uids",
        f"must be an integer in [{len(neurons)}, {MAX_UIDS}], got {cap!r}")
  events = doc["events"]
  _need(isinstance(events, list), "events", "must be a list")
  last_block = 0
  for k, ev in enumerate(events):
    w = f"events[{k}]"
    _need(isinstance(ev, dict), w, "must be an object")
    _need(_is_int(ev.get("block")) and ev["block"] >= 0, f"{w}.block",
          "must be a nonnegative integer")
    _need(ev["block"] >= last_block, f"{w}.block", f"blocks never go down ({ev['block']} after "
          f"{last_block})")
    last_block = ev["block"]
    kinds = [x for x in ev if x != "block"]
    _need(len(kinds) == 1 and kinds[0] in EVENT_KINDS, w,
          f"must have a block and exactly one of {EVENT_KINDS}, got {kinds}")
    kind, body = kinds[0], ev[kinds[0]]
    w = f"{w}.{kind}"
    _need(isinstance(body, dict), w, "must be an object")
    if kind in ("set_weights", "commit_weights"):
      for key in ("uid", "uids", "values"):
        _need(key in body, f"{w}.{key}", "missing")
      _need(_is_int(body["uid"]) and body["uid"] >= 0, f"{w}.uid", "must be a uid")
      _need(isinstance(body["uids"], list) and all(_is_int(u) for u in body["uids"]),
            f"{w}.uids", "must be a list of integers")
      _need(isinstance(body["values"], list) and all(
          _is_int(v) and 0 <= v <= 65535 for v in body["values"]), f"{w}.values",
            "must be a list of u16 integers")
      _need(len(body["uids"]) == len(body["values"]), w, "uids and values differ in length")
    elif kind == "register":
      _need(_is_num(body.get("stake", 0)) and body.get("stake", 0) >= 0, f"{w}.stake",
            "must be a finite nonnegative number")
    elif kind in ("add_stake", "reset_bonds"):
      _need(_is_int(body.get("uid")) and body["uid"] >= 0, f"{w}.uid", "must be a uid")
      if kind == "add_stake":
        _need(_is_num(body.get("amount")) and body["amount"] >= 0, f"{w}.amount",
              "must be a finite nonnegative number")
    else:
      _need(_is_int(body.get("emission")) and body["emission"] >= 0, f"{w}.emission",
            "must be a nonnegative integer (rao)")
      expect = body.get("expect", {})
      _need(isinstance(expect, dict), f"{w}.expect", "must be an object")
      for key in expect:
        _need(key in EXPECT_KEYS, f"{w}.expect.{key}", f"unknown key; known: {EXPECT_KEYS}")
      tol = body.get("tolerance") or {}
      _need(isinstance(tol, dict) and all(_is_num(v) for v in tol.values()),
            f"{w}.tolerance", "must map keys to numbers")
  return doc


def load(path: str | pathlib.Path) -> dict:
  try:
    with open(path, encoding="utf-8") as f:
      doc = json.load(f)
  except OSError as e:
    raise ScenarioError(f"cannot read: {e.strerror}") from e
  except json.JSONDecodeError as e:
    raise ScenarioError(f"not valid JSON: {e}") from e
  return validate(doc)


def _outputs(out, n: int) -> dict:
  row = lambda x: np.asarray(x)[:n].tolist()
  return {
      "stake": row(out.stake_N), "active": row(out.active_N),
      "active_stake": row(out.active_stake_N), "validator_permit": row(out.validator_permit_N),
      "consensus": row(out.consensus_N), "validator_trust": row(out.validator_trust_N),
      "incentive": row(out.incentive_N), "dividends": row(out.dividends_N),
      "server_emission": row(out.server_emission_N),
      "validator_emission": row(out.validator_emission_N), "emission": row(out.emission_N),
      "bonds": np.asarray(out.bonds_NxN)[:n, :n].tolist()}


def run(doc: dict, *, warn=None) -> Iterator[dict]:
  """Plays a validated scenario; yields one output dict per epoch (docs/scenario_format.md keys).

  Each yielded dict also carries `_expect`, `_tolerance` and `_event` for `check`.
  """
  from bittensor_jax import chain
  from bittensor_jax.chain import commit_reveal, ledger, registration, yuma  # after x64 is set
  hyper_kw = {k: v for k, v in doc.get("hyperparameters", {}).items() if k != "max_allowed_uids"}
  try:
    hyper = ledger.Hyper.create(**hyper_kw)
  except ValueError as e:
    raise ScenarioError(f"hyperparameters: {e}") from e
  neurons = doc["neurons"]
  cap = doc.get("hyperparameters", {}).get("max_allowed_uids", len(neurons))
  sub = ledger.subnet_from_neurons(
      [nrn["stake"] for nrn in neurons], [nrn["registered_at"] for nrn in neurons],
      [nrn["last_update"] for nrn in neurons],
      [nrn.get("validator_permit", False) for nrn in neurons], capacity=cap, hyper=hyper)
  hotkeys = [nrn.get("hotkey", f"uid{i}") for i, nrn in enumerate(neurons)]
  warn = warn or (lambda msg: print(msg, file=sys.stderr))
  for k, ev in enumerate(doc["events"]):
    block = ev["block"]
    sub = sub.replace(block=np.int64(block))
    kind = next(x for x in ev if x != "block")
    body = ev[kind]
    if kind in ("set_weights", "commit_weights"):
      if body["uid"] >= cap:
        raise ScenarioError(f"events[{k}].{kind}.uid: {body['uid']} is outside [0, {cap})")
      fn = chain.set_weights if kind == "set_weights" else chain.commit_weights
      sub, reason = fn(sub, body["uid"], body["uids"], body["values"])
      if reason:
        warn(f"{doc['name']}: events[{k}] {kind} by uid {body['uid']} rejected: {reason}")
    elif kind == "register":
      sub, uid, _ = registration.register(sub, np.float64(body.get("stake", 0)))
      uid = int(uid)
      if uid < 0:
        warn(f"{doc['name']}: events[{k}] register rejected: no uid available")
      elif uid < len(hotkeys):
        hotkeys[uid] = body.get("hotkey", f"uid{uid}")
      else:
        hotkeys.append(body.get("hotkey", f"uid{uid}"))
    elif kind == "add_stake":
      if body["uid"] >= len(hotkeys):
        raise ScenarioError(f"events[{k}].add_stake.uid: {body['uid']} is not registered")
      sub = chain.add_stake(sub, body["uid"], body["amount"])
    elif kind == "reset_bonds":
      if body["uid"] >= cap:
        raise ScenarioError(f"events[{k}].reset_bonds.uid: {body['uid']} is outside [0, {cap})")
      sub, reason = chain.reset_bonds(sub, body["uid"])
      if reason:
        warn(f"{doc['name']}: events[{k}] reset_bonds rejected: {reason}")
    else:
      sub = commit_reveal.reveal_due(sub)  # due commits become weights first (commit-reveal)
      sub, out = yuma.epoch(sub, np.int64(body["emission"]))
      res = {"scenario": doc["name"], "block": block, **_outputs(out, int(sub.n))}
      res["_expect"] = body.get("expect", {})
      res["_tolerance"] = body.get("tolerance") or {}
      res["_event"] = k
      yield res


def max_errors(res: dict) -> dict[str, float]:
  """Max absolute error per expected key (bonds only on the listed entries)."""
  errs = {}
  for key, want in res["_expect"].items():
    got = res[key]
    if key == "bonds":
      diffs = [abs(got[int(r)][int(c)] - v) for r, cols in want.items() for c, v in cols.items()]
      errs[key] = float(max(diffs, default=0))
    elif key in BOOL_KEYS:
      errs[key] = float(sum(bool(g) != bool(w) for g, w in zip(got, want)) +
                        abs(len(got) - len(want)))
    else:
      errs[key] = (float(np.max(np.abs(np.asarray(got[:len(want)], float) -
                                       np.asarray(want, float)), initial=0))
                   if len(got) == len(want) else math.inf)
  return errs


def check(res: dict) -> None:
  """Raises CheckFailure on the first expected key that is off by more than its tolerance."""
  errs = max_errors(res)
  for key, err in errs.items():
    tol = 0 if key in BOOL_KEYS else res["_tolerance"].get(key, DEFAULT_TOLERANCE[key])
    if not err <= tol:
      raise CheckFailure(
          f"{res['scenario']}: epoch at block {res['block']} (events[{res['_event']}]): {key} "
          f"differs by {err:g} > tolerance {tol:g}\n  expected: {res['_expect'][key]}\n"
          f"  got:      {res[key]}")


def public(res: dict) -> dict:
  return {k: v for k, v in res.items() if not k.startswith("_")}


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m bittensor_jax.replay",
      description="Replay Subtensor scenario files (docs/scenario_format.md) on bittensor_jax's"
                  " chain functions in float64; prints one JSON object per epoch.")
  parser.add_argument("files", nargs="+", help="scenario JSON files")
  parser.add_argument("--check", action="store_true",
                      help="compare with each epoch's `expect`; exit 1 on the first mismatch")
  parser.add_argument("--summary", action="store_true",
                      help="print the max error per scenario and key to stderr (with --check)")
  args = parser.parse_args(argv)

  import jax  # pylint: disable=import-outside-toplevel
  jax.config.update("jax_enable_x64", True)
  for path in args.files:
    try:
      doc = load(path)
      worst: dict[str, float] = {}
      for res in run(doc):
        print(json.dumps(public(res)), flush=True)
        if args.check:
          check(res)
          for key, err in max_errors(res).items():
            worst[key] = max(worst.get(key, 0.0), err)
      if args.check and args.summary:
        print(f"{doc['name']}: ok; max error " +
              ", ".join(f"{k}={v:.3g}" for k, v in sorted(worst.items())), file=sys.stderr)
    except ScenarioError as e:
      print(f"error: {path}: {e}", file=sys.stderr)
      return 2
    except CheckFailure as e:
      print(f"mismatch: {path}: {e}", file=sys.stderr)
      return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
