"""The community's scenario library ([YS] = bactensor/yuma-simulation `cases.py`), every variant.

Three validators A, B, C (default stake 0.8 / 0.1 / 0.1) weight two servers (three in cases
15-18, 21 and 22) for 40 epochs. Every case is stacked into arrays (stake_CxExV,
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

Cases: the 22 of [YS] ([YS] `cases.py`), [YS] numbers in brackets: kappa_moves_first [1],
kappa_moves_second [2], kappa_moves_third [3], all_switch [4], kappa_moves_second_then_third [5],
kappa_moves_second_then_all_switch [6], big_moves_late_then_one_small_late [7],
copier_moves_late [8], merged_validators [9], kappa_delayed [10], clipping_demo [11],
small_supports_alt_miner [12], big_on_s2_smalls_on_s1 [13], one_epoch_switch [14],
stable_miner_25/50/75/90 [15-18], client_side_wta [19], server_side_wta [20],
client_side_wta_3_servers [21], server_side_wta_3_servers [22]. The weights, epochs and reset
points are [YS]'s; each case's note says what it sets up and where the outcome departs from SPEC.

Bond resets (cases 5-8, 12, 13): the server's bond column is removed just before the epoch [YS]
names. The chain variants apply the rule of the chain's `reset_bonds` extrinsic to the ledger
(`reset_bond_columns`, with `bonds_reset_enabled` on); every community variant zeroes the column
of its own bonds. [YS] itself resets only for "Yuma 2C" and "Yuma 3" (with or without liquid
alpha); here every variant gets the same reset so the rows compare like with like.

Server-side winner-takes-all (cases 20-22, [YS] `winner_takes_all`): the community variants pay
the whole incentive to the server(s) of the largest rank; the chain has no such rule, so the
chain variants run those cases with the chain's proportional incentive.

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
  """One case: stake and weights per epoch, [YS] case number, bond reset and incentive rule."""
  name: str
  stake_ExV: np.ndarray
  weights_ExVxK: np.ndarray
  note: str
  ys: int = 0                             # [YS] case number ([YS] `cases.py`)
  reset: tuple[int, int] | None = None    # (epoch, server): bond column zeroed before that epoch
  winner_takes_all: bool = False          # [YS] server-side WTA incentive (`winner_takes_all`)


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


S1, S2 = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0)
# What each case added from [YS] sets up, and what the variants make of it (40 epochs, the default
# Params; [YS] states an expected outcome only for case 8 of these).
NOTES: dict[int, str] = {
    5: ("B, C lead to S2 (e1), A follows (e2); back to S1: B at e21, C at e22, A at e23; S2's "
        "bonds reset before e20. Moving back before the 0.8-stake A is clipped: B ends below C "
        "under every variant but capacity"),
    6: ("B leads to S2 (e1), A follows (e2), C last (e3); all back to S1 at e21, S1's bonds reset "
        "before e21. As kappa_moves_second: eager B >= lazy C under every variant"),
    7: ("B, C lead to S2 (e1), A follows (e2); C alone moves back to S1 at e21, the rest at e22; "
        "S1's bonds reset before e21. C, first back, ends lowest under the chain's and the "
        "Yuma3 variants"),
    8: ("B, C lead twice (to S2 at e1, back to S1 at e21); A copies one epoch late; S2's bonds "
        "reset before e20. SPEC's 'the copier A should not profit' does not hold here except "
        "for prev_weights and capacity: A holds 0.8 of the stake, so it *is* the kappa majority, "
        "the leaders' new weights are clipped until A arrives, and A ends above its stake "
        "share; the reset makes it worse under Yuma3 (B, C's old S2 bonds no longer outweigh "
        "A's fresh ones when they leave at e21)"),
    12: ("all switch S1 -> S2 at e1 and back at e21, but B keeps 0.001 on the other server "
         "(S2's bonds reset before e20). The hedge costs B a little under every variant but "
         "prev_weights, where it pays: at each switch the previous epoch's weights are clipped "
         "to the new consensus, B's 0.001 is the only weight that survives, and B gets the "
         "epoch's dividends"),
    13: ("A, C weight S2, B splits 0.5/0.5 over S1 and S2; C splits too from e21; S1's bonds "
         "reset before e20 (a no-op: S1 never has consensus, so nobody holds S1 bonds). The "
         "half on S1 is clipped: B loses under every variant, C once it splits"),
    19: ("stakes 0.49/0.49/0.02; seeded noisy scores of two servers (true 0.6 vs 0.55; noise "
         "0.05 for A, 0.15 for B, C); client-side winner-takes-all (each row one-hot on its best "
         "server). The noisy big B loses, strongly (classic -0.15)"),
    20: ("case 19's noisy scores as proportional weights, server-side winner-takes-all "
         "incentive (the chain variants have none: their rows are the proportional incentive). "
         "The noisy B loses far less than under the client-side rule"),
    21: ("stakes 0.34/0.33/0.33; three servers (true 0.30/0.35/0.40; noise 0.05 for A, 0.10 "
         "for B, C); client-side winner-takes-all, and [YS] also turns on the server-side one. "
         "When the three pick different servers no server has kappa support and no dividends "
         "are paid, so D - S sums below 0"),
    22: "case 21's noisy scores as proportional weights, server-side winner-takes-all",
}


def _scheduled(name: str, ys: int, rows, stake=(0.8, 0.1, 0.1), note: str = "",
               epochs: int = EPOCHS, **kw) -> Case:
  """A case whose weights are `rows(e)`: the three validator rows (server weights) at epoch e."""
  W = np.array([np.asarray(rows(e), float) for e in range(epochs)]).reshape(epochs, 3, N_SERVERS)
  return Case(name, np.tile(np.asarray(stake, float), (epochs, 1)), W, note, ys, **kw)


def _noisy_weights(epochs: int, true_perf, sds, per_server_draws: bool,
                   seed: int = 42) -> np.ndarray:
  """[YS] `_get_shared_weights_epochs` / `_get_shared_3server_weights_epochs`: each validator
  scores the servers' true performance plus Gaussian noise (standard deviation per validator),
  clamped to [0, 1], rows normalized. Each draw has its own seed, seed + i * epochs + e, with i
  the (validator, server) pair when `per_server_draws` (two servers) or the validator (three), as
  [YS]; the draws are numpy's (PCG64), not torch's, so the values differ from [YS]'s."""
  k = len(true_perf)
  W = np.zeros((epochs, 3, N_SERVERS))
  for e in range(epochs):
    for v, sd in enumerate(sds):
      if per_server_draws:
        noise = [np.random.default_rng(seed + (k * v + j) * epochs + e).normal(0, sd)
                 for j in range(k)]
      else:
        noise = np.random.default_rng(seed + v * epochs + e).normal(0, sd, k)
      W[e, v, :k] = np.clip(np.asarray(true_perf) + noise, 0, 1)
  return W / W.sum(-1, keepdims=True)


def _client_wta(W_ExVxK: np.ndarray) -> np.ndarray:
  """Client-side winner-takes-all: each validator puts all its weight on its best server."""
  return (np.arange(W_ExVxK.shape[-1]) == W_ExVxK.argmax(-1)[..., None]).astype(float)


def library(epochs: int = EPOCHS) -> list[Case]:
  """The 22 cases of [YS] ([YS] `cases.py`), in [YS] order (see the module docstring)."""
  never = epochs + 1
  cases = [
      _switching("kappa_moves_first", {0: 1, 1: 2, 2: 3}, note="A (0.8) moves first, C last",
                 epochs=epochs)._replace(ys=1),
      _switching("kappa_moves_second", {0: 2, 1: 1, 2: 3}, note="B leads, A follows, C last",
                 epochs=epochs)._replace(ys=2),
      _switching("kappa_moves_third", {0: 3, 1: 1, 2: 2}, note="B, then C, then A",
                 epochs=epochs)._replace(ys=3),
      _switching("all_switch", {0: 1, 1: 1, 2: 1}, note="all move at epoch 1",
                 epochs=epochs)._replace(ys=4),
      _scheduled("kappa_moves_second_then_third", 5,
                 lambda e: ([S1] * 3 if e == 0 else [S1, S2, S2] if e == 1 else
                            [S2] * 3 if e <= 20 else [S2, S1, S2] if e == 21 else
                            [S2, S1, S1] if e == 22 else [S1] * 3),
                 note=NOTES[5], reset=(20, 1), epochs=epochs),
      _scheduled("kappa_moves_second_then_all_switch", 6,
                 lambda e: ([S1] * 3 if e == 0 else [S1, S2, S1] if e == 1 else
                            [S2, S2, S1] if e == 2 else [S2] * 3 if e <= 20 else [S1] * 3),
                 note=NOTES[6], reset=(21, 0), epochs=epochs),
      _scheduled("big_moves_late_then_one_small_late", 7,
                 lambda e: ([S1] * 3 if e == 0 else [S1, S2, S2] if e == 1 else
                            [S2] * 3 if e <= 20 else [S2, S2, S1] if e == 21 else [S1] * 3),
                 note=NOTES[7], reset=(21, 0), epochs=epochs),
      _switching("copier_moves_late", {0: 2, 1: 1, 2: 1}, back={0: 22, 1: 21, 2: 21},
                 note=NOTES[8], epochs=epochs)._replace(ys=8, reset=(20, 1)),
      _switching("kappa_delayed", {0: 10, 1: 1, 2: 1}, note="A stays on S1 until e10",
                 epochs=epochs)._replace(ys=10),
      _switching("one_epoch_switch", {0: never, 1: never, 2: 20}, back={0: never, 1: never,
                                                                         2: 21},
                 stake=(0.33, 0.33, 0.34), note="C weights S2 at e20 only",
                 epochs=epochs)._replace(ys=14),
  ]
  merged = _switching("merged_validators", {0: 2, 1: 1, 2: 3},
                      note="kappa_moves_second weights; C's stake merges into B from e6",
                      epochs=epochs)._replace(ys=9)
  stake = merged.stake_ExV.copy()
  stake[6:] = (0.8, 0.2, 0.0)
  cases.append(merged._replace(stake_ExV=stake))
  W = np.zeros((epochs, 3, N_SERVERS))
  W[:, 0, :2], W[:, 1, :2], W[:, 2, :2] = (0.3, 0.7), (0.6, 0.4), (0.61, 0.39)
  W[20:, 2, :2] = (0.3, 0.61)
  cases.append(Case("clipping_demo", np.tile([0.49, 0.49, 0.02], (epochs, 1)), W,
                    "stakes 0.49/0.49/0.02; C changes to [0.3, 0.61] at e20", 11))
  lo, hi = (0.999, 0.001, 0.0), (0.001, 0.999, 0.0)
  cases.append(_scheduled(
      "small_supports_alt_miner", 12,
      lambda e: [S1, lo, S1] if e == 0 or e > 20 else [S2, hi, S2],
      note=NOTES[12], reset=(20, 1), epochs=epochs))
  half = (0.5, 0.5, 0.0)
  cases.append(_scheduled(
      "big_on_s2_smalls_on_s1", 13, lambda e: [S2, half, S2] if e <= 20 else [S2, half, half],
      note=NOTES[13], reset=(20, 0), epochs=epochs))
  for ys, share in zip((15, 16, 17, 18), (0.25, 0.5, 0.75, 0.9)):
    W = np.zeros((epochs, 3, N_SERVERS))
    move = {0: 2, 1: 1, 2: 3}
    for v in range(3):
      for e in range(epochs):
        W[e, v] = (0, 1 - share, share) if e >= move[v] else (1 - share, 0, share)
    cases.append(Case(f"stable_miner_{round(100 * share)}", np.tile([0.8, 0.1, 0.1], (epochs, 1)),
                      W, f"server 3 keeps {share:g} of every row; A moves second", ys))
  two = _noisy_weights(epochs, (0.6, 0.55), (0.05, 0.15, 0.15), per_server_draws=True)
  three = _noisy_weights(epochs, (0.30, 0.35, 0.40), (0.05, 0.10, 0.10), per_server_draws=False)
  for ys, name, W, stake, wta in (
      (19, "client_side_wta", _client_wta(two), (0.49, 0.49, 0.02), False),
      (20, "server_side_wta", two, (0.49, 0.49, 0.02), True),
      (21, "client_side_wta_3_servers", _client_wta(three), (0.34, 0.33, 0.33), True),
      (22, "server_side_wta_3_servers", three, (0.34, 0.33, 0.33), True)):
    cases.append(Case(name, np.tile(np.asarray(stake), (epochs, 1)), W, NOTES[ys], ys,
                      winner_takes_all=wta))
  return sorted(cases, key=lambda c: c.ys)


def schedule(cases: list[Case]) -> tuple[np.ndarray, np.ndarray]:
  """(reset_CxExK, winner_takes_all_C): each case's bond resets (a reset epoch past the run's end
  never happens) and incentive rule, stacked like `stack`."""
  C, E = len(cases), cases[0].weights_ExVxK.shape[0]
  reset = np.zeros((C, E, N_SERVERS), bool)
  for c, case in enumerate(cases):
    if case.reset is not None and case.reset[0] < E:
      reset[c, case.reset[0], case.reset[1]] = True
  return reset, np.array([c.winner_takes_all for c in cases])


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
      bonds_reset_enabled=True,
      alpha_low=round(params.alpha_low * 65535), alpha_high=round(params.alpha_high * 65535),
      alpha_sigmoid_steepness=round(params.steepness * 100),
      max_allowed_validators=n_validators)


@functools.partial(jax.jit, static_argnames=("n_validators",))
def _chain_run(subnet, stake_ExV, weights_ExVxK, reset_ExK, *, n_validators: int):
  """The chain's epoch over E epochs: each step sets every validator's weights, resets the bond
  columns due (the rule of `chain.reset_bonds`, gated by `bonds_reset_enabled`), then one epoch."""
  from bittensor_jax.chain import yuma  # pylint: disable=import-outside-toplevel
  V = n_validators
  N = subnet.in_use_N.shape[-1]

  def body(sub, x):
    stake_V, W_VxK, reset_K = x
    W_VxN = jnp.zeros((V, N), jnp.float64).at[:, V:].set(W_VxK)
    q_VxN = K.max_upscale_u16(W_VxN)
    block = sub.block + 1
    sub = reset_bond_columns(sub, jnp.zeros((N,), bool).at[V:].set(reset_K))
    sub = sub.replace(
        block=block,
        stake_N=sub.stake_N.at[:V].set(stake_V * 1e6),
        weights_RxN=sub.weights_RxN.at[:V].set(q_VxN),  # a dense ledger: row v is uid v
        has_weight_RxN=sub.has_weight_RxN.at[:V].set(W_VxN > 0),
        last_update_N=sub.last_update_N.at[:V].set(block))
    sub, out = yuma.epoch(sub, jnp.asarray(10**9, jnp.int64))
    return sub, (out.dividends_N[:V], out.incentive_N[V:], out.consensus_N[V:])

  _, (D, I, C) = jax.lax.scan(body, subnet, (stake_ExV, weights_ExVxK, reset_ExK))
  return D, I, C


def reset_bond_columns(subnet, reset_N):
  """`chain.reset_bonds` for every uid in the bool mask `reset_N` at once, traceable: removes those
  bond columns from every row when `hyper.bonds_reset_enabled` (else nothing changes)."""
  col = reset_N[None, :] & subnet.hyper.bonds_reset_enabled
  return subnet.replace(bonds_RxN=jnp.where(col, 0, subnet.bonds_RxN),
                        has_bond_RxN=subnet.has_bond_RxN & ~col)


def run_chain(name: str, stake_CxExV, weights_CxExVxK, params: variants.Params,
              reset_CxExK=None):
  """A chain variant over every case: dividends_CxExV and incentive_CxExK. The chain has no
  server-side winner-takes-all: its incentive is always the normalized rank."""
  from bittensor_jax.chain import ledger  # pylint: disable=import-outside-toplevel
  C, E, V = stake_CxExV.shape
  Kn = weights_CxExVxK.shape[-1]
  n = V + Kn
  sub = ledger.subnet_from_neurons(
      np.zeros(n), registered_at=np.ones(n, np.int64), last_update=np.ones(n, np.int64),
      validator_permit=np.arange(n) < V, hyper=chain_hyper(params, name, V), block=1)
  subs = jax.tree.map(lambda x: jnp.broadcast_to(x, (C,) + x.shape), sub)
  if reset_CxExK is None:
    reset_CxExK = np.zeros((C, E, Kn), bool)
  D, I, _ = jax.vmap(functools.partial(_chain_run, n_validators=V))(
      subs, jnp.asarray(stake_CxExV), jnp.asarray(weights_CxExVxK), jnp.asarray(reset_CxExK))
  return np.asarray(D), np.asarray(I)


@functools.partial(jax.jit, static_argnames=("name",))
def _variant_run(name, stake_CxExV, weights_CxExVxK, params, reset_CxExK, wta_C):
  out = jax.vmap(lambda s, w, r, t: variants.run(name, s, w, params._replace(winner_takes_all=t),
                                                 reset_ExK=r))(
                                                     stake_CxExV, weights_CxExVxK, reset_CxExK,
                                                     wta_C)
  return out.dividends_V, out.incentive_K


def run_variant(name: str, stake_CxExV, weights_CxExVxK, params: variants.Params,
                reset_CxExK=None, wta_C=None):
  """Any variant (chain or community) over every case: dividends_CxExV and incentive_CxExK.

  Args:
    name: a key of ALL_VARIANTS.
    stake_CxExV, weights_CxExVxK: the cases (`stack`).
    params: the variant's parameters (`winner_takes_all` is taken from `wta_C`).
    reset_CxExK: bond columns zeroed before each epoch (`schedule`); default none.
    wta_C: server-side winner-takes-all per case (`schedule`); default off. The chain variants
      ignore it (the chain has no such incentive).
  """
  C, E, _ = np.shape(stake_CxExV)
  Kn = np.shape(weights_CxExVxK)[-1]
  reset_CxExK = np.zeros((C, E, Kn), bool) if reset_CxExK is None else reset_CxExK
  if name in CHAIN_VARIANTS:
    return run_chain(name, stake_CxExV, weights_CxExVxK, params, reset_CxExK)
  variants.get(name)
  wta_C = np.zeros((C,), bool) if wta_C is None else wta_C
  D, I = _variant_run(name, jnp.asarray(stake_CxExV), jnp.asarray(weights_CxExVxK), params,
                      jnp.asarray(reset_CxExK), jnp.asarray(wta_C))
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
  reset, wta = schedule(cases)
  rows, traces = [], {}
  for name in tqdm.tqdm(variant_names, desc="cases", unit="variant", file=sys.stderr,
                        disable=not progress):
    D, _ = run_variant(name, stake, weights, params, reset, wta)
    traces[name] = D
    for c, case in enumerate(cases):
      per_tao, rel = measures(D[c], stake[c])
      for v, label in enumerate(VALIDATORS):
        rows.append({"case": case.name, "variant": name, "validator": label,
                     "dividends_per_1000_tao": float(per_tao[v]),
                     "relative_dividends": float(rel[v])})
  return rows, traces


def write_plots(directory, rows: list[dict]) -> list:
  """cases_relative_dividends.png and cases_dividends_per_1000_tao.png: a panel per case ([YS]
  order), validators A, B, C, a bar per variant."""
  from bittensor_jax.studies import figures  # pylint: disable=import-outside-toplevel
  by_ys = {c.name: c.ys for c in library()}
  names = sorted({r["case"] for r in rows}, key=by_ys.__getitem__)
  variant_names = list(dict.fromkeys(r["variant"] for r in rows))
  validators = sorted({r["validator"] for r in rows})
  index = {(r["case"], r["variant"], r["validator"]): r for r in rows}
  out = []
  for key, ylabel, title in (
      ("relative_dividends", "mean D - S", "relative dividends D - S (mean over epochs)"),
      ("dividends_per_1000_tao", "per 1000 TAO, 40 epochs", "dividends per 1000 TAO staked")):
    series = {v: np.array([[index[(c, v, a)][key] for a in validators] for c in names])
              for v in variant_names}
    out.append(figures.case_panels(directory / f"cases_{key}.png",
                                   f"{title}, per case and validator",
                                   [f"{by_ys[c]}. {c}" for c in names], validators, series,
                                   ylabel))
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
