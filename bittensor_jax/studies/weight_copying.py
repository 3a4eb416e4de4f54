"""Weight copying: does copying the visible consensus pay as well as honest validation?

A copier validator does no work: each epoch it sets the consensus it can see, the stake-weighted
median (`kernels.weighted_median_col`, docs/chain.md §1.7) of the honest validators' last revealed
weights, row-normalized. Honest validators weight the servers by their current quality, which
changes over time: at every epoch each server's quality jumps to a new random level with
probability `switch_prob`, so the ranking of the servers moves (the case library's switching
miners, in a network of many servers). Many random draws run at once (`vmap`), each a `lax.scan`
over epochs of the chain's own `chain.set_weights_rows` and `chain.yuma.epoch` on a ledger.

Commit-reveal (docs/chain.md §1.6 item 4): with a reveal period of R epochs, the weights a
validator commits at epoch e enter the chain's `Weights` at epoch e + R. Every validator's weights
therefore act R epochs late, and the copier, which can only read revealed weights, copies at epoch
e the weights committed at e - R; its copy, committed at e, is revealed at e + R, when the honest
weights in force are those committed at e. So the copier acts on information R epochs older than
the honest validators'. R = 0 is commit-reveal off: weights are public as soon as they are set,
and the copier, setting its weights last before the epoch, copies the weights in force.

**How commit-reveal is modelled here.** When the chain has commit-reveal
(`bittensor_jax.chain.commit_reveal`, `chain.commit_weights_rows`, the Hyper fields
`commit_reveal_weights_enabled` and `reveal_period_epochs`), a run with R >= 1 uses it: every
step reveals the due commits (`commit_reveal.reveal_due`), the copier reads the honest rows now
stored in the ledger's `weights_NxN`, every validator commits (`commit_weights_rows`), and the
epoch runs. Without it (the chain feature was being built on another branch when this study was
written), the study applies each row through the chain's `set_weights_rows` at its reveal point,
R epochs after it was committed. For a network in which every committed row is revealed honestly
and on time both give the same weights in force, except in the first R epochs (no honest row is
revealed yet with real commit-reveal; the fallback uses the first rows) and for the uid-sniping
mask of docs/chain.md §1.6 item 4 (no uid registers here). The warm-up epochs are left out of the
measure. `COMMIT_REVEAL` says which path this build takes.

The measure: copier_dividend_ratio = (copier's dividends per unit of stake) / (honest validators'
dividends per unit of stake), dividends summed over the epochs after a warm-up and over the
draws' mean. 1.0 means copying pays as well as honest work.

Variants (the chain's epoch): classic (EMA bonds, alpha 0.1), yuma3 (relative bonds, fixed
alpha 0.1), yuma3_liquid (Yuma3 with liquid alpha 2.0, alpha in [0.1, 0.3], steepness 10).

  python -m bittensor_jax.studies.weight_copying --json
"""
# pylint: disable=invalid-name
from __future__ import annotations

import functools
import importlib.util
import sys

import jax
import jax.numpy as jnp
import numpy as np
import tqdm
from absl import app, flags

from bittensor_jax.chain import kernels as K
from bittensor_jax.studies import output

COMMIT_REVEAL = importlib.util.find_spec("bittensor_jax.chain.commit_reveal") is not None
VARIANTS = ("classic", "yuma3", "yuma3_liquid")
REVEAL_PERIODS = (0, 1, 2, 3)
ROW_KEYS = ("variant", "reveal_period_epochs", "copier_dividend_ratio")


def hyper_for(variant: str, n_validators: int, reveal_period: int = 0):
  """The chain hyperparameters of a variant (kappa 0.5, beta 1, tempo 1), with commit-reveal on
  for a reveal period >= 1 when the chain has it."""
  from bittensor_jax.chain import ledger  # pylint: disable=import-outside-toplevel
  if variant not in VARIANTS:
    raise ValueError(f"variant: expected one of {VARIANTS}, got {variant!r}")
  return ledger.Hyper.create(
      tempo=1, kappa=32767, bonds_penalty=65535, bonds_moving_average=900000,
      yuma3_enabled=variant != "classic", liquid_alpha_enabled=variant == "yuma3_liquid",
      alpha_low=6553, alpha_high=19660, alpha_sigmoid_steepness=1000,
      max_allowed_validators=n_validators, **_commit_reveal_hyper(reveal_period))


def _commit_reveal_hyper(reveal_period: int) -> dict:
  if not (COMMIT_REVEAL and reveal_period > 0):
    return {}
  return {"commit_reveal_weights_enabled": True, "reveal_period_epochs": int(reveal_period)}


def honest_weights(key, n_honest: int, n_servers: int, epochs: int, noise: float,
                   switch_prob: float):
  """Honest validators' weights per epoch, from server qualities that change over time.

  Each server starts at a uniform random quality and, at every later epoch with probability
  `switch_prob`, jumps to a new uniform random quality, so the servers change rank. Each honest
  validator sees the quality with multiplicative noise N(1, noise^2) (clamped at 0).

  Returns:
    float[E, V_h, K] rows summing to 1.
  """
  k_lvl, k_t, k_n = jax.random.split(key, 3)
  levels_ExK = jax.random.uniform(k_lvl, (epochs, n_servers))
  jump_ExK = jax.random.bernoulli(k_t, switch_prob, (epochs, n_servers)).at[0].set(True)
  e_E = jnp.arange(epochs)
  last_ExK = jax.lax.cummax(jnp.where(jump_ExK, e_E[:, None], 0), axis=0)
  q_ExK = jnp.take_along_axis(levels_ExK, last_ExK, axis=0)
  eps = noise * jax.random.normal(k_n, (epochs, n_honest, n_servers))
  W = jnp.maximum(q_ExK[:, None, :] * (1 + eps), 0)
  return K.row_normalize(W)


def copied_weights(stake_h_V, H_ExVxK, kappa=0.5):
  """The copier's row per epoch: the consensus of the given honest rows, row-normalized."""
  med = jax.vmap(lambda W: K.weighted_median_col(stake_h_V, W, jnp.asarray(kappa, W.dtype)))
  return K.row_normalize(med(H_ExVxK))


def _apply_weights(sub, n_validators, rows_VxK, commit: bool = False):
  """Every validator sets (or commits) its row through the chain's extrinsic."""
  from bittensor_jax import chain  # pylint: disable=import-outside-toplevel
  N = sub.in_use_N.shape[-1]
  V = n_validators
  W_VxN = jnp.zeros((V, N), rows_VxK.dtype).at[:, V:].set(rows_VxK)
  values = jnp.zeros((N, N), jnp.int32).at[:V].set(K.max_upscale_u16(W_VxN))
  present = jnp.zeros((N, N), bool).at[:V].set(W_VxN > 0)
  extrinsic = chain.commit_weights_rows if commit else chain.set_weights_rows
  sub, _ = extrinsic(sub, jnp.arange(N) < V, values, present)
  return sub


@functools.partial(jax.jit, static_argnames=("n_honest", "n_servers", "epochs", "use_cr"))
def simulate(key, subnet, reveal_period, copier_stake, noise, switch_prob, *, n_honest: int,
             n_servers: int, epochs: int, use_cr: bool = False):
  """One draw: dividends per epoch of the honest validators and of the copier (the last one).

  Returns:
    (dividends_ExV, stake_V): V = n_honest + 1 validators, the copier last.
  """
  from bittensor_jax.chain import yuma  # pylint: disable=import-outside-toplevel
  k_w, k_s = jax.random.split(key)
  H = honest_weights(k_w, n_honest, n_servers, epochs, noise, switch_prob)
  raw = jnp.maximum(1 + 0.3 * jax.random.normal(k_s, (n_honest,)), 0.05)
  stake_h = (1 - copier_stake) * K.normalize(raw)
  stake_V = jnp.concatenate([stake_h, jnp.asarray([copier_stake], stake_h.dtype)])
  copy_E = copied_weights(stake_h, H)
  V = n_honest + 1
  subnet = subnet.replace(stake_N=subnet.stake_N.at[:V].set(stake_V * 1e6))
  e_E = jnp.arange(epochs)
  honest_idx = jnp.maximum(e_E - reveal_period, 0)          # committed R epochs ago
  copier_idx = jnp.maximum(e_E - 2 * reveal_period, 0)      # copied R epochs before its commit

  def body(sub, e):
    rows = jnp.concatenate([H[honest_idx[e]], copy_E[copier_idx[e]][None, :]], axis=0)
    sub = sub.replace(block=sub.block + 1)
    sub = _apply_weights(sub, V, rows)
    sub, out = yuma.epoch(sub, jnp.asarray(10**9, jnp.int64))
    return sub, out.dividends_N[:V]

  def body_cr(sub, e):
    from bittensor_jax.chain import commit_reveal  # pylint: disable=import-outside-toplevel
    sub = commit_reveal.reveal_due(sub.replace(block=sub.block + 1))
    seen = K.row_normalize(sub.weights_NxN[:n_honest, V:].astype(H.dtype))  # revealed rows
    copy = copied_weights(stake_h, seen[None])[0]
    sub = _apply_weights(sub, V, jnp.concatenate([H[e], copy[None, :]], axis=0), commit=True)
    sub, out = yuma.epoch(sub, jnp.asarray(10**9, jnp.int64))
    return sub, out.dividends_N[:V]

  _, D = jax.lax.scan(body_cr if use_cr else body, subnet, e_E)
  return D, stake_V


def run(*, variants_=VARIANTS, reveal_periods=REVEAL_PERIODS, draws: int = 32,
        n_honest: int = 8, n_servers: int = 16, epochs: int = 60, warmup: int = 30,
        copier_stake: float = 0.1, noise: float = 0.1, switch_prob: float = 0.1, seed: int = 0,
        progress: bool = False) -> list[dict]:
  """The copier's dividend ratio for every variant and reveal period (same draws throughout).

  Returns:
    Rows with ROW_KEYS plus ratio_std (across draws) and draws.
  """
  from bittensor_jax.chain import ledger  # pylint: disable=import-outside-toplevel
  if not 0 < copier_stake < 1:
    raise ValueError(f"copier_stake: must be in (0, 1), got {copier_stake}")
  if not 0 <= switch_prob <= 1:
    raise ValueError(f"switch_prob: must be in [0, 1], got {switch_prob}")
  if not 0 <= warmup < epochs:
    raise ValueError(f"warmup: must be in [0, epochs), got {warmup}")
  if draws < 1 or n_honest < 1 or n_servers < 2:
    raise ValueError("draws, n_honest: must be >= 1; n_servers: >= 2")
  V = n_honest + 1
  n = V + n_servers
  keys = jax.random.split(jax.random.key(seed), draws)
  rows = []
  todo = [(v, r) for v in variants_ for r in reveal_periods]
  for variant, R in tqdm.tqdm(todo, desc="weight_copying", file=sys.stderr,
                              disable=not progress):
    sub = ledger.subnet_from_neurons(
        np.zeros(n), registered_at=np.ones(n, np.int64), last_update=np.ones(n, np.int64),
        validator_permit=np.arange(n) < V, hyper=hyper_for(variant, V, R), block=1,
        rows=V)  # only the V validators set weights (docs/chain.md §1.16)
    D, S = jax.vmap(lambda k: simulate(k, sub, R, copier_stake, noise, switch_prob,
                                       n_honest=n_honest, n_servers=n_servers, epochs=epochs,
                                       use_cr=COMMIT_REVEAL and R > 0))(keys)
    D = np.asarray(D)[:, warmup:].sum(1)       # [draws, V]
    S = np.asarray(S)
    per_stake = D / S
    honest = D[:, :-1].sum(1) / S[:, :-1].sum(1)
    ratio = per_stake[:, -1] / honest
    rows.append({"variant": variant, "reveal_period_epochs": int(R),
                 "copier_dividend_ratio": float(ratio.mean()),
                 "ratio_std": float(ratio.std()), "draws": draws,
                 "commit_reveal": "chain" if COMMIT_REVEAL and R > 0 else
                                  ("off" if R == 0 else "reveal-point set_weights")})
  return rows


FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_list("variants", list(VARIANTS), "chain variants")
  flags.DEFINE_list("reveal_periods", [str(r) for r in REVEAL_PERIODS],
                    "reveal periods in epochs (0 = commit-reveal off)")
  flags.DEFINE_integer("draws", 32, "random networks, vmapped")
  flags.DEFINE_integer("epochs", 60, "epochs per draw")
  flags.DEFINE_integer("warmup", 30, "epochs left out of the measure (bond memory of the "
                       "start-up)")
  flags.DEFINE_float("copier_stake", 0.1, "the copier's stake share")
  flags.DEFINE_float("switch_prob", 0.1, "per-epoch probability that a server's quality jumps")
  flags.DEFINE_float("noise", 0.1, "honest validators' relative noise on the quality")
  flags.DEFINE_integer("seed", 0, "PRNG seed")
  output.define_output_flags()


def main(argv) -> int:
  del argv
  try:
    bad = [v for v in FLAGS.variants if v not in VARIANTS]
    if bad:
      raise ValueError(f"variants: unknown {bad}; known: {list(VARIANTS)}")
    periods = tuple(int(r) for r in FLAGS.reveal_periods)
    if any(r < 0 for r in periods):
      raise ValueError("reveal_periods: must be >= 0")
    output.enable_x64()
    rows = run(variants_=tuple(FLAGS.variants), reveal_periods=periods, draws=FLAGS.draws,
               epochs=FLAGS.epochs, warmup=FLAGS.warmup, copier_stake=FLAGS.copier_stake,
               switch_prob=FLAGS.switch_prob, noise=FLAGS.noise, seed=FLAGS.seed, progress=True)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  table = output.format_table(rows, ROW_KEYS + ("ratio_std",))
  output.emit([{k: r[k] for k in ROW_KEYS} for r in rows], as_json=FLAGS.json, csv_path=None,
              table=table)
  if FLAGS.csv:
    output.write_csv(FLAGS.csv, rows)
  if FLAGS.plots:
    from bittensor_jax.studies import figures  # pylint: disable=import-outside-toplevel
    d = output.plots_dir(FLAGS.plots)
    series = {v: [r["copier_dividend_ratio"] for r in rows if r["variant"] == v]
              for v in FLAGS.variants}
    p = figures.lines(d / "weight_copying.png", "copier dividends per stake / honest",
                      np.asarray(periods), series, "reveal period (epochs, 0 = off)",
                      "copier dividend ratio")
    print(f"wrote {p}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  define_flags()
  app.run(lambda argv: sys.exit(main(argv)))
