"""A differentiable relaxation of the epoch and a gradient attack by a cabal.

The chain's consensus (docs/chain.md §1.7) is a step function of the weights, so its gradient is
zero almost everywhere. `soft_weighted_median_col` replaces it with a smooth function of the same
definition, "the largest w supported by at least kappa of the stake":

  support  F_kj = S_k + sum_{i != k} S_i sigmoid((W_ij - W_kj) / T)  (soft stake with W_ij >= W_kj)
           G_kj = F_kj - S_k                                        (soft stake with W_ij > W_kj)
  median   C_j  = sum_k W_kj softmax_k(log sigmoid((F_kj - kappa) / T_s)
                                       + log sigmoid((kappa - G_kj) / T_s))

with the temperature T in weight units and T_s = T / max(W) in stake units. The hard median is
the one score with F >= kappa > G (at least kappa of the stake at or above it, less than kappa
strictly above it), so as T -> 0 each sigmoid tends to the indicator it replaces and C_j to
`kernels.weighted_median_col` (ties between rows at exactly equal weights count half; the study's
weights are continuous). The rest of the relaxed epoch is the chain's (clip, incentive, bonds
penalty, dividends: `consensus_guarantees.single_epoch` with the median swapped).

The attack: on one Monte Carlo draw of the consensus-guarantees network (N = 512, 64 validators),
the honest side keeps its weights at honest utility W_H; the cabal's validators choose any rows
(softmax of free logits over all servers) and maximize the cabal's emission 1 - E_H of the
relaxed epoch by Adam, starting from the Monte Carlo worst case (the best W_C of the grid). The
weights found are then scored on the exact (hard) epoch and compared with the Monte Carlo worst
case at the same W_H and draw.

  python -m bittensor_jax.studies.relaxation --json
"""
# pylint: disable=invalid-name
from __future__ import annotations

import functools
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm
from absl import app, flags

from bittensor_jax.chain import kernels as K
from bittensor_jax.studies import consensus_guarantees as cg
from bittensor_jax.studies import output

F32 = jnp.float32


def soft_weighted_median_col(stake_V: jax.Array, W_VxK: jax.Array, kappa,
                             temperature) -> jax.Array:
  """Smooth kappa-weighted median of each column (see the module docstring).

  Args:
    stake_V: nonnegative stake (normalized here; rows with 0 stake take no part, as on chain).
    W_VxK: scores, one column per server.
    kappa: majority in [0, 1].
    temperature: T > 0 in the units of W.

  Returns:
    C_K, differentiable in stake and W; -> `kernels.weighted_median_col` as T -> 0.
  """
  S_V = K.normalize(stake_V)
  T = jnp.asarray(temperature, W_VxK.dtype)
  diff = (W_VxK[:, None, :] - W_VxK[None, :, :]) / T            # [i, k, j]: W_ij - W_kj
  eye = jnp.eye(W_VxK.shape[0], dtype=bool)[:, :, None]
  ind = jnp.where(eye, 1.0, jax.nn.sigmoid(diff))
  F_VxK = jnp.einsum("i,ikj->kj", S_V, ind)                      # soft stake at or above W_kj
  G_VxK = F_VxK - S_V[:, None]                                   # soft stake strictly above
  t_stake = T / jnp.maximum(jnp.abs(W_VxK).max(), 1e-12)
  logits = (jax.nn.log_sigmoid((F_VxK - kappa) / t_stake) +
            jax.nn.log_sigmoid((kappa - G_VxK) / t_stake))
  logits = jnp.where(S_V[:, None] > 0, logits, -jnp.inf)
  return (jax.nn.softmax(logits, axis=0) * W_VxK).sum(0)


def soft_epoch(stake_V, W_VxK, kappa, beta, temperature):
  """`consensus_guarantees.single_epoch` with the soft median: (incentive_K, dividends_V)."""
  C_K = soft_weighted_median_col(stake_V, W_VxK, kappa, temperature)
  Wc = jnp.minimum(W_VxK, C_K[None, :])
  I_K = K.normalize(stake_V @ Wc)
  Wb = K.interpolate(W_VxK, Wc, beta)
  return I_K, K.col_normalize(stake_V[:, None] * Wb) @ I_K


def _honest(I_K, D_V, honest_V, honest_K, xi):
  return xi * jnp.where(honest_V, D_V, 0).sum() + (1 - xi) * jnp.where(honest_K, I_K, 0).sum()


@functools.partial(jax.jit, static_argnames=("steps",))
def attack(stake_V, own_VxK, other_VxK, honest_V, honest_K, w_h, w_c0, kappa, beta, xi,
           temperature, learning_rate, *, steps: int):
  """Gradient ascent of the cabal's relaxed emission over its validators' rows.

  The temperature is annealed geometrically from `temperature` to `temperature / 100` over the
  steps (a soft median far from the hard one is an easy target: the cabal would exploit the
  relaxation rather than the chain), and every iterate is scored on the exact epoch; the best
  exact one is returned.

  Args:
    stake_V, own_VxK, other_VxK: one draw (`consensus_guarantees.sample_network`).
    honest_V, honest_K: side masks.
    w_h: the honest utility (fixed honest rows).
    w_c0: the starting cabal self-weight (the Monte Carlo worst case).
    kappa, beta, xi: the setting.
    temperature: of the soft median at the first step.
    learning_rate: Adam's.
    steps: Adam steps (static).

  Returns:
    (W_VxK, soft_trace, hard_trace): the best weights on the exact epoch (honest rows unchanged),
    and E_H of the relaxed and of the exact epoch per step.
  """
  W0 = cg.weights_for(own_VxK, other_VxK, honest_V, w_h, w_c0)
  logits0 = jnp.log(W0 + 1e-12)
  opt = optax.adam(learning_rate)

  def weights(logits):
    return jnp.where(honest_V[:, None], W0, jax.nn.softmax(logits, axis=1))

  def honest_emission(logits, t):
    I_K, D_V = soft_epoch(stake_V, weights(logits), kappa, beta, t)
    return _honest(I_K, D_V, honest_V, honest_K, xi)

  def step(carry, frac):
    logits, state, best_W, best_e = carry
    t = temperature * jnp.power(F32(0.01), frac)
    e_soft, g = jax.value_and_grad(honest_emission)(logits, t)  # the cabal minimizes E_H
    W = weights(logits)
    e_hard = hard_honest_emission(stake_V, W, honest_V, honest_K, kappa, beta, xi)
    better = e_hard < best_e
    best_W = jnp.where(better, W, best_W)
    best_e = jnp.where(better, e_hard, best_e)
    upd, state = opt.update(g, state, logits)
    return (optax.apply_updates(logits, upd), state, best_W, best_e), (e_soft, e_hard)

  fracs = jnp.arange(steps, dtype=F32) / max(steps - 1, 1)
  init = (logits0, opt.init(logits0), W0, F32(jnp.inf))
  (_, _, best_W, _), (soft, hard) = jax.lax.scan(step, init, fracs)
  return best_W, soft, hard


def hard_honest_emission(stake_V, W_VxK, honest_V, honest_K, kappa, beta, xi):
  """E_H of the exact epoch (the chain's median)."""
  I_K, D_V = cg.single_epoch(stake_V, W_VxK, kappa, beta)
  return _honest(I_K, D_V, honest_V, honest_K, xi)


def run(*, honest_stake=0.6, honest_utilities=(0.6, 0.7, 0.8), sigma_w=0.4, kappa=0.5,
        beta=1.0, xi=0.5, samples=1, grid_step=0.02, steps=300, temperature=1e-4,
        learning_rate=0.02, seed=0, progress=False) -> list[dict]:
  """The attack at each W_H against the Monte Carlo worst case on the same draws.

  Returns:
    One row per (draw, W_H): honest_utility, mc_worst_cabal_self_weight, mc_worst_honest_emission,
    attack_honest_emission_soft (relaxed epoch), attack_honest_emission_hard (exact epoch),
    attack_gain (MC worst E_H - attack E_H on the exact epoch; > 0: the gradient found a stronger
    attack than any W_C), honest_retains (attack E_H >= S_H).
  """
  hv, hk = (jnp.asarray(m) for m in cg.side_masks(honest_stake))
  n_grid = cg.grid_points(grid_step)
  grid = np.linspace(0, 1, n_grid)
  keys = jax.random.split(jax.random.key(seed), samples)
  rows = []
  todo = [(s, w) for s in range(samples) for w in honest_utilities]
  for s, w_h in tqdm.tqdm(todo, desc="relaxation", file=sys.stderr, disable=not progress):
    stake_V, own, other = cg.sample_network(keys[s], hv, hk, jnp.asarray(honest_stake, F32),
                                            jnp.asarray(sigma_w, F32))
    mc = jax.jit(jax.vmap(lambda wc: cg.honest_emission(stake_V, own, other, hv, hk, w_h, wc,
                                                        kappa, beta, xi)))(
        jnp.asarray(grid, F32))
    worst = int(np.argmin(np.asarray(mc)))
    W, soft, hard_trace = attack(stake_V, own, other, hv, hk, F32(w_h), F32(grid[worst]),
                                 F32(kappa), F32(beta), F32(xi), F32(temperature),
                                 F32(learning_rate), steps=steps)
    hard = float(hard_honest_emission(stake_V, W, hv, hk, F32(kappa), F32(beta), F32(xi)))
    rows.append({
        "sample": s, "honest_stake": honest_stake, "honest_utility": float(w_h),
        "mc_worst_cabal_self_weight": float(grid[worst]),
        "mc_worst_honest_emission": float(mc[worst]),
        "attack_honest_emission_soft": float(soft[-1]),
        "relaxation_gap_at_start": float(soft[0]) - float(hard_trace[0]),
        "attack_honest_emission_hard": hard,
        "attack_gain": float(mc[worst]) - hard,
        "honest_retains": bool(hard >= honest_stake)})
  return rows


FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_float("honest_stake", 0.6, "S_H")
  flags.DEFINE_list("honest_utilities", ["0.6", "0.7", "0.8"], "W_H values")
  flags.DEFINE_float("sigma_w", 0.4, "weight standard deviation")
  flags.DEFINE_integer("samples", 1, "Monte Carlo draws")
  flags.DEFINE_integer("steps", 300, "Adam steps")
  flags.DEFINE_float("temperature", 1e-4, "soft-median temperature at the first step (weight "
                     "units; annealed to 1/100 of it)")
  flags.DEFINE_float("learning_rate", 0.02, "Adam learning rate")
  flags.DEFINE_integer("seed", 0, "PRNG seed")
  output.define_output_flags()


def main(argv) -> int:
  del argv
  try:
    cg.side_masks(FLAGS.honest_stake)
    utilities = tuple(float(x) for x in FLAGS.honest_utilities)
    if any(not 0 <= u <= 1 for u in utilities):
      raise ValueError("honest_utilities: each must be in [0, 1]")
    if FLAGS.temperature <= 0:
      raise ValueError("temperature: must be > 0")
    if FLAGS.steps < 1 or FLAGS.samples < 1:
      raise ValueError("steps, samples: must be >= 1")
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  output.enable_x64()
  rows = run(honest_stake=FLAGS.honest_stake, honest_utilities=utilities,
             sigma_w=FLAGS.sigma_w, samples=FLAGS.samples, steps=FLAGS.steps,
             temperature=FLAGS.temperature, learning_rate=FLAGS.learning_rate, seed=FLAGS.seed,
             progress=True)
  table = output.format_table(rows, ("sample", "honest_utility", "mc_worst_cabal_self_weight",
                                     "mc_worst_honest_emission", "relaxation_gap_at_start",
                                     "attack_honest_emission_soft",
                                     "attack_honest_emission_hard", "attack_gain",
                                     "honest_retains"), fmt="{:.4f}")
  output.emit(rows, as_json=FLAGS.json, csv_path=FLAGS.csv, table=table)
  if FLAGS.plots:
    from bittensor_jax.studies import figures  # pylint: disable=import-outside-toplevel
    d = output.plots_dir(FLAGS.plots)
    x = np.array([r["honest_utility"] for r in rows if r["sample"] == 0])
    p = figures.lines(d / "relaxation_attack.png", f"cabal attacks at S_H = {FLAGS.honest_stake}",
                      x, {"Monte Carlo worst W_C": [r["mc_worst_honest_emission"] for r in rows
                                                    if r["sample"] == 0],
                          "gradient attack (exact epoch)": [r["attack_honest_emission_hard"]
                                                            for r in rows if r["sample"] == 0],
                          "S_H": [FLAGS.honest_stake] * len(x)},
                      "honest utility W_H", "honest emission E_H")
    print(f"wrote {p}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  define_flags()
  app.run(lambda argv: sys.exit(main(argv)))
