"""The community's scenario library ([YS] = bactensor/yuma-simulation `cases.py`), every variant.

Three validators A, B, C (default stake 0.8 / 0.1 / 0.1) weight two servers (three in the
stable-miner cases) for 40 epochs. Every case is stacked into arrays (stake_CxExV,
weights_CxExVxK; the two-server cases get a third, unweighted server) and each variant runs all
cases in one `vmap`ped `lax.scan`:

  chain_classic, chain_yuma3, chain_yuma3_liquid
      the chain's own epoch, `bittensor_jax.chain.yuma.epoch` on a ledger of V + K uids (weights
      stored as u16 like `set_weights` does, bonds stored as u16, permits, masks; one block and
      one epoch per step, tempo 1);
  every name of `variants.VARIANTS`
      the community variants on the dense validator x server block.

Measures (as [YS] judges a result): dividends per 1000 TAO staked,
0.41 D_i 100 / (S_i 1e6 / 1000) summed over the epochs (the [YS] defaults: 41 % of an emission of
100 per epoch to validators, 1e6 TAO staked; epochs where S_i = 0 count 0), and relative dividends
D_i - S_i averaged over the epochs (>= 0: the validator earns at least its stake share).

Cases ([YS] case numbers in brackets; the weights follow [YS], details we
could not pin down are named in each case's note): kappa_moves_first [1], kappa_moves_second [2],
kappa_moves_third [3], all_switch [4], copier_moves_late [8, without the bond reset],
merged_validators [9], kappa_delayed [10], clipping_demo [11], one_epoch_switch [14],
stable_miner_25/50/75/90 [15-18].

  python -m bittensor_jax.studies.cases --json --plots docs/studies
"""
# pylint: disable=invalid-name
from __future__ import annotations

import functools
import sys
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import tqdm
from absl import app, flags

from bittensor_jax.chain import kernels as K
from bittensor_jax.studies import output, variants

EPOCHS = 40
N_SERVERS = 3
VALIDATORS = ("A", "B", "C")
CHAIN_VARIANTS = ("chain_classic", "chain_yuma3", "chain_yuma3_liquid")
ALL_VARIANTS = CHAIN_VARIANTS + tuple(variants.VARIANTS)
EMISSION_PER_EPOCH, VALIDATOR_RATIO, TOTAL_STAKE = 100.0, 0.41, 1e6


class Case(NamedTuple):
  name: str
  stake_ExV: np.ndarray
  weights_ExVxK: np.ndarray
  note: str


def _one_hot(server: int, k: int = N_SERVERS) -> np.ndarray:
  r = np.zeros(k)
  r[server] = 1
  return r


def _switching(name: str, move_epoch: dict[int, int], stake=(0.8, 0.1, 0.1), note: str = "",
               back: dict[int, int] | None = None, epochs: int = EPOCHS) -> Case:
  """Validator v weights server 0 until epoch move_epoch[v], then server 1 (then server 0 again
  from back[v], if given)."""
  W = np.zeros((epochs, 3, N_SERVERS))
  for v in range(3):
    for e in range(epochs):
      on = 1 if e >= move_epoch[v] else 0
      if back is not None and e >= back[v]:
        on = 0
      W[e, v] = _one_hot(on)
  return Case(name, np.tile(np.asarray(stake, float), (epochs, 1)), W, note)


def library(epochs: int = EPOCHS) -> list[Case]:
  """The cases (see the module docstring)."""
  never = epochs + 1
  cases = [
      _switching("kappa_moves_first", {0: 1, 1: 2, 2: 3}, note="A (0.8) moves first, C last",
                 epochs=epochs),
      _switching("kappa_moves_second", {0: 2, 1: 1, 2: 3}, note="B leads, A follows, C last",
                 epochs=epochs),
      _switching("kappa_moves_third", {0: 3, 1: 1, 2: 2}, note="B, then C, then A", epochs=epochs),
      _switching("all_switch", {0: 1, 1: 1, 2: 1}, note="all move at epoch 1", epochs=epochs),
      _switching("copier_moves_late", {0: 2, 1: 1, 2: 1}, back={0: 22, 1: 21, 2: 21},
                 note="B, C lead twice (to S2 at e1, back to S1 at e21); A copies one epoch "
                      "late; no bond reset", epochs=epochs),
      _switching("kappa_delayed", {0: 10, 1: 1, 2: 1}, note="A stays on S1 until e10",
                 epochs=epochs),
      _switching("one_epoch_switch", {0: never, 1: never, 2: 20}, back={0: never, 1: never,
                                                                         2: 21},
                 stake=(0.33, 0.33, 0.34), note="C weights S2 at e20 only", epochs=epochs),
  ]
  merged = _switching("merged_validators", {0: 2, 1: 1, 2: 3},
                      note="kappa_moves_second weights; C's stake merges into B from e6",
                      epochs=epochs)
  stake = merged.stake_ExV.copy()
  stake[6:] = (0.8, 0.2, 0.0)
  cases.append(merged._replace(stake_ExV=stake))
  W = np.zeros((epochs, 3, N_SERVERS))
  W[:, 0, :2], W[:, 1, :2], W[:, 2, :2] = (0.3, 0.7), (0.6, 0.4), (0.61, 0.39)
  W[20:, 2, :2] = (0.3, 0.61)
  cases.append(Case("clipping_demo", np.tile([0.49, 0.49, 0.02], (epochs, 1)), W,
                    "stakes 0.49/0.49/0.02; C changes to [0.3, 0.61] at e20"))
  for share in (0.25, 0.5, 0.75, 0.9):
    W = np.zeros((epochs, 3, N_SERVERS))
    move = {0: 2, 1: 1, 2: 3}
    for v in range(3):
      for e in range(epochs):
        W[e, v] = (0, 1 - share, share) if e >= move[v] else (1 - share, 0, share)
    cases.append(Case(f"stable_miner_{round(100 * share)}", np.tile([0.8, 0.1, 0.1], (epochs, 1)),
                      W, f"server 3 keeps {share:g} of every row; A moves second"))
  return cases


def stack(cases: list[Case]) -> tuple[np.ndarray, np.ndarray]:
  return (np.stack([c.stake_ExV for c in cases]).astype(np.float64),
          np.stack([c.weights_ExVxK for c in cases]).astype(np.float64))


def chain_hyper(params: variants.Params, name: str, n_validators: int):
  """Hyperparameters of the chain's epoch for a chain variant (u16 storage of the proportions)."""
  from bittensor_jax.chain import ledger  # pylint: disable=import-outside-toplevel
  u16 = lambda x: int(np.floor(x * 65535))
  return ledger.Hyper.create(
      tempo=1, kappa=u16(params.kappa), bonds_penalty=round(params.bonds_penalty * 65535),
      bonds_moving_average=round((1 - params.alpha) * 1e6),
      yuma3_enabled=name != "chain_classic", liquid_alpha_enabled=name == "chain_yuma3_liquid",
      alpha_low=round(params.alpha_low * 65535), alpha_high=round(params.alpha_high * 65535),
      alpha_sigmoid_steepness=round(params.steepness * 100),
      max_allowed_validators=n_validators)


@functools.partial(jax.jit, static_argnames=("n_validators",))
def _chain_run(subnet, stake_ExV, weights_ExVxK, *, n_validators: int):
  """The chain's epoch over E epochs: each step sets every validator's weights, then one epoch."""
  from bittensor_jax.chain import yuma  # pylint: disable=import-outside-toplevel
  V = n_validators
  N = subnet.in_use_N.shape[-1]

  def body(sub, x):
    stake_V, W_VxK = x
    W_VxN = jnp.zeros((V, N), jnp.float64).at[:, V:].set(W_VxK)
    q_VxN = K.max_upscale_u16(W_VxN)
    block = sub.block + 1
    sub = sub.replace(
        block=block,
        stake_N=sub.stake_N.at[:V].set(stake_V * 1e6),
        weights_NxN=sub.weights_NxN.at[:V].set(q_VxN),
        has_weight_NxN=sub.has_weight_NxN.at[:V].set(W_VxN > 0),
        last_update_N=sub.last_update_N.at[:V].set(block))
    sub, out = yuma.epoch(sub, jnp.asarray(10**9, jnp.int64))
    return sub, (out.dividends_N[:V], out.incentive_N[V:], out.consensus_N[V:])

  _, (D, I, C) = jax.lax.scan(body, subnet, (stake_ExV, weights_ExVxK))
  return D, I, C


def run_chain(name: str, stake_CxExV, weights_CxExVxK, params: variants.Params):
  """A chain variant over every case: dividends_CxExV and incentive_CxExK."""
  from bittensor_jax.chain import ledger  # pylint: disable=import-outside-toplevel
  C, E, V = stake_CxExV.shape
  Kn = weights_CxExVxK.shape[-1]
  n = V + Kn
  sub = ledger.subnet_from_neurons(
      np.zeros(n), registered_at=np.ones(n, np.int64), last_update=np.ones(n, np.int64),
      validator_permit=np.arange(n) < V, hyper=chain_hyper(params, name, V), block=1)
  subs = jax.tree.map(lambda x: jnp.broadcast_to(x, (C,) + x.shape), sub)
  D, I, _ = jax.vmap(functools.partial(_chain_run, n_validators=V))(
      subs, jnp.asarray(stake_CxExV), jnp.asarray(weights_CxExVxK))
  return np.asarray(D), np.asarray(I)


@functools.partial(jax.jit, static_argnames=("name",))
def _variant_run(name, stake_CxExV, weights_CxExVxK, params):
  out = jax.vmap(lambda s, w: variants.run(name, s, w, params))(stake_CxExV, weights_CxExVxK)
  return out.dividends_V, out.incentive_K


def run_variant(name: str, stake_CxExV, weights_CxExVxK, params: variants.Params):
  """Any variant (chain or community) over every case: dividends_CxExV and incentive_CxExK."""
  if name in CHAIN_VARIANTS:
    return run_chain(name, stake_CxExV, weights_CxExVxK, params)
  variants.get(name)
  D, I = _variant_run(name, jnp.asarray(stake_CxExV), jnp.asarray(weights_CxExVxK), params)
  return np.asarray(D), np.asarray(I)


def measures(dividends_ExV: np.ndarray, stake_ExV: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(dividends per 1000 TAO summed over epochs, mean relative dividends D - S) per validator."""
  S = stake_ExV / stake_ExV.sum(-1, keepdims=True)
  D = dividends_ExV / np.where(dividends_ExV.sum(-1, keepdims=True) > 0,
                               dividends_ExV.sum(-1, keepdims=True), 1)
  per_tao = np.where(S > 0, VALIDATOR_RATIO * D * EMISSION_PER_EPOCH /
                     np.where(S > 0, S * TOTAL_STAKE / 1000, 1), 0)
  return per_tao.sum(0), (D - S).mean(0)


def run(variant_names=ALL_VARIANTS, params: variants.Params = variants.Params(),
        progress: bool = False, epochs: int = EPOCHS) -> tuple[list[dict], dict]:
  """Every case under every variant.

  Returns:
    (rows, traces): rows {case, variant, validator, dividends_per_1000_tao, relative_dividends};
    traces[variant] = dividends_CxExV.
  """
  cases = library(epochs)
  stake, weights = stack(cases)
  rows, traces = [], {}
  for name in tqdm.tqdm(variant_names, desc="cases", unit="variant", file=sys.stderr,
                        disable=not progress):
    D, _ = run_variant(name, stake, weights, params)
    traces[name] = D
    for c, case in enumerate(cases):
      per_tao, rel = measures(D[c], stake[c])
      for v, label in enumerate(VALIDATORS):
        rows.append({"case": case.name, "variant": name, "validator": label,
                     "dividends_per_1000_tao": float(per_tao[v]),
                     "relative_dividends": float(rel[v])})
  return rows, traces


def write_plots(directory, rows: list[dict]) -> list:
  from bittensor_jax.studies import figures  # pylint: disable=import-outside-toplevel
  labels = sorted({(r["case"], r["validator"]) for r in rows},
                  key=lambda cv: ([c.name for c in library()].index(cv[0]), cv[1]))
  names = list(dict.fromkeys(r["variant"] for r in rows))
  out = []
  for key, ylabel in (("relative_dividends", "mean D - S"),
                      ("dividends_per_1000_tao", "dividends per 1000 TAO (40 epochs)")):
    series = {n: [next(r[key] for r in rows if r["variant"] == n and (r["case"], r["validator"])
                       == cv) for cv in labels] for n in names}
    out.append(figures.bar_table(directory / f"cases_{key}.png", key.replace("_", " "),
                                 [f"{c}:{v}" for c, v in labels], series, ylabel))
  return out


FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_list("variants", list(ALL_VARIANTS), "variants to run")
  flags.DEFINE_float("kappa", 0.5, "consensus majority")
  flags.DEFINE_float("bonds_penalty", 1.0, "beta")
  flags.DEFINE_float("alpha", 0.1, "EMA alpha (weight of the new bonds)")
  output.define_output_flags()


def main(argv) -> int:
  del argv
  bad = [v for v in FLAGS.variants if v not in ALL_VARIANTS]
  if bad:
    print(f"error: variants: unknown {bad}; known: {list(ALL_VARIANTS)}", file=sys.stderr)
    return 2
  for name in ("kappa", "bonds_penalty", "alpha"):
    if not 0 <= getattr(FLAGS, name) <= 1:
      print(f"error: {name}: must be in [0, 1]", file=sys.stderr)
      return 2
  output.enable_x64()
  params = variants.Params(kappa=FLAGS.kappa, bonds_penalty=FLAGS.bonds_penalty,
                           alpha=FLAGS.alpha)
  rows, _ = run(FLAGS.variants, params, progress=True)
  table = output.format_table(rows, ("case", "variant", "validator", "dividends_per_1000_tao",
                                     "relative_dividends"))
  output.emit(rows, as_json=FLAGS.json, csv_path=FLAGS.csv, table=table)
  if FLAGS.plots:
    for p in write_plots(output.plots_dir(FLAGS.plots), rows):
      print(f"wrote {p}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  define_flags()
  app.run(lambda argv: sys.exit(main(argv)))
