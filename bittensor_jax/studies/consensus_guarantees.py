"""Consensus guarantees: the Monte Carlo retention study of Subtensor's `docs/consensus.md`.

An honest side H and a cabal side C share a network of N = 512 neurons, 64 of them validators
(only validators hold stake). The honest share of neurons equals the honest stake share S_H, with
at least one validator and one server on each side. One epoch without bond history (bonds are the
fresh Delta B of docs/chain.md §1.10A, with the bonds penalty blend of §1.9):

  consensus  C_j = largest w such that validators with W_ij >= w hold >= kappa of the stake
             (docs/chain.md §1.7, `kernels.weighted_median_col`)
  clip       Wbar_ij = min(W_ij, C_j)                     (docs/chain.md §1.8, `kernels.col_clip`)
  incentive  I_j = normalize(sum_i S_i Wbar_ij)
  bonds      Wtilde = (1 - beta) W + beta Wbar   (docs/chain.md §1.9, `kernels.interpolate`)
             dB_ij = S_i Wtilde_ij / sum_k S_k Wtilde_kj (`kernels.col_normalize`)
  dividends  D_i = sum_j dB_ij I_j
  honest     E_H = xi D(H) + (1 - xi) I(H)

Sampling (docs/consensus.md, "Monte Carlo simulations"): stake ~ N(1, 0.3^2) clamped at 0, each
side normalized to S_H and 1 - S_H; weights ~ N(1, sigma_W^2) clamped at 0, each quadrant
normalized per validator row and scaled: honest validators put W_H on honest servers and 1 - W_H on
cabal servers, cabal validators W_C on cabal servers and 1 - W_C on honest servers.

The honest utility required is the smallest W_H with E_H >= S_H for every W_C in [0, 1] (the
cabal's best reply): per Monte Carlo draw, the worst case over the W_C grid is taken at each W_H,
and its E_H = S_H crossing is interpolated linearly in W_H; the draws are then averaged (draws that
never reach S_H, even at W_H = 1, are left out of the mean and counted in `reached_fraction`; if
none reaches it the value is nan, printed as null). One compiled call evaluates every
(draw, W_H, W_C) of a setting, and the same draws are used at every grid point and in every
setting (common random numbers), so settings differ only by their parameters.

The grid varies one parameter at a time from the baseline sigma_W = 0.4, kappa = 0.5, beta = 1,
xi = 0.5, at each S_H. Run:

  python -m bittensor_jax.studies.consensus_guarantees --json
  python -m bittensor_jax.studies.consensus_guarantees --samples 16 --grid_step 0.01 \
      --csv docs/studies/consensus_guarantees.csv --plots docs/studies

The epoch math is float32 (the chain's fast simulation mode).
"""
# pylint: disable=invalid-name
from __future__ import annotations

import functools
import math
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import tqdm
from absl import app, flags

from bittensor_jax.chain import kernels as K
from bittensor_jax.studies import output

N_NEURONS = 512
N_VALIDATORS = 64
STAKE_SIGMA = 0.3
BASELINE = {"sigma_w": 0.4, "kappa": 0.5, "bonds_penalty": 1.0, "validator_share": 0.5}
SWEEPS = {
    "sigma_w": (0.0, 0.2, 0.4),
    "kappa": (0.4, 0.5, 0.6),
    "bonds_penalty": (0.0, 0.5, 1.0),
    "validator_share": (0.0, 0.25, 0.5),
}
HONEST_STAKES = (0.51, 0.55, 0.6, 0.7, 0.8, 0.9)
ROW_KEYS = ("sigma_w", "kappa", "bonds_penalty", "validator_share", "honest_stake",
            "honest_utility_required")
F32 = jnp.float32


def side_masks(honest_stake: float, n_neurons: int = N_NEURONS,
               n_validators: int = N_VALIDATORS) -> tuple[np.ndarray, np.ndarray]:
  """Which validators and servers are honest: |H| / N = S_H, at least one of each per side.

  Args:
    honest_stake: S_H in (0, 1).
    n_neurons: N, validators included.
    n_validators: V (the first V uids); the other K = N - V are servers.

  Returns:
    (honest_V, honest_K): boolean masks, honest uids first.

  Raises:
    ValueError: S_H outside (0, 1) or sizes that leave a side empty.
  """
  if not 0 < honest_stake < 1:
    raise ValueError(f"honest_stake: must be in (0, 1), got {honest_stake}")
  n_servers = n_neurons - n_validators
  if n_validators < 2 or n_servers < 2:
    raise ValueError(f"n_validators: need >= 2 validators and >= 2 servers, got "
                     f"{n_validators} of {n_neurons}")
  hv = int(np.clip(round(honest_stake * n_validators), 1, n_validators - 1))
  hs = int(np.clip(round(honest_stake * n_neurons) - hv, 1, n_servers - 1))
  return np.arange(n_validators) < hv, np.arange(n_servers) < hs


def sample_network(key: jax.Array, honest_V: jax.Array, honest_K: jax.Array,
                   honest_stake: jax.Array, sigma_w: jax.Array):
  """One Monte Carlo draw of stake and of the quadrant-normalized weight shapes.

  Args:
    key: PRNG key.
    honest_V, honest_K: side masks of the V validators and K servers (`side_masks`).
    honest_stake: S_H.
    sigma_w: standard deviation of the raw weights around 1.

  Returns:
    (stake_V, own_VxK, other_VxK): normalized stake (honest side sums to S_H), and each row's raw
    weights normalized within its own side's servers (`own`) and within the other side's
    (`other`). A validator with self-weight s sets W = s own + (1 - s) other.
  """
  k_stake, k_weights = jax.random.split(key)
  V, Kn = honest_V.shape[0], honest_K.shape[0]
  raw_V = jnp.maximum(1 + STAKE_SIGMA * jax.random.normal(k_stake, (V,), F32), 0)
  side_h = K.normalize(jnp.where(honest_V, raw_V, 0))
  side_c = K.normalize(jnp.where(honest_V, 0, raw_V))
  stake_V = honest_stake * side_h + (1 - honest_stake) * side_c
  raw_VxK = jnp.maximum(1 + sigma_w * jax.random.normal(k_weights, (V, Kn), F32), 0)
  same_VxK = honest_V[:, None] == honest_K[None, :]
  own_VxK = K.row_normalize(jnp.where(same_VxK, raw_VxK, 0))
  other_VxK = K.row_normalize(jnp.where(same_VxK, 0, raw_VxK))
  return stake_V.astype(F32), own_VxK, other_VxK


def weights_for(own_VxK, other_VxK, honest_V, w_h, w_c):
  """W_VxK: honest rows put w_h on their own side, cabal rows w_c on theirs."""
  self_V = jnp.where(honest_V, w_h, w_c).astype(own_VxK.dtype)
  return self_V[:, None] * own_VxK + (1 - self_V)[:, None] * other_VxK


def single_epoch(stake_V: jax.Array, W_VxK: jax.Array, kappa, beta):
  """Incentive and dividends of one epoch with no bond history (docs/chain.md §1.7-§1.10A).

  Args:
    stake_V: validator stake (any scale; the median renormalizes it).
    W_VxK: validator -> server weights, rows summing to 1.
    kappa: consensus majority in [0, 1].
    beta: bonds penalty in [0, 1].

  Returns:
    (incentive_K, dividends_V), each summing to 1 (or 0 with no weight at all).
  """
  C_K = K.weighted_median_col(stake_V, W_VxK, jnp.asarray(kappa, W_VxK.dtype))
  Wc_VxK = K.col_clip(W_VxK, C_K)
  I_K = K.normalize(stake_V @ Wc_VxK)
  Wb_VxK = K.interpolate(W_VxK, Wc_VxK, jnp.asarray(beta, W_VxK.dtype))
  dB_VxK = K.col_normalize(stake_V[:, None] * Wb_VxK)
  return I_K, dB_VxK @ I_K


def honest_parts(stake_V, own_VxK, other_VxK, honest_V, honest_K, w_h, w_c, kappa, betas_B):
  """I(H) and D(H) for every bonds penalty in `betas_B`, for one draw at one (W_H, W_C).

  The consensus and the incentive do not depend on beta, and E_H = xi D(H) + (1 - xi) I(H) is
  linear in xi, so one median serves every (beta, xi) of a setting.

  Returns:
    (incentive_H, dividends_H_B): I(H) scalar and D(H) per beta.
  """
  W_VxK = weights_for(own_VxK, other_VxK, honest_V, w_h, w_c)
  C_K = K.weighted_median_col(stake_V, W_VxK, kappa)
  Wc_VxK = K.col_clip(W_VxK, C_K)
  I_K = K.normalize(stake_V @ Wc_VxK)

  def dividends_h(beta):
    Wb_VxK = K.interpolate(W_VxK, Wc_VxK, beta)
    D_V = K.col_normalize(stake_V[:, None] * Wb_VxK) @ I_K
    return jnp.where(honest_V, D_V, 0).sum()

  return jnp.where(honest_K, I_K, 0).sum(), jax.vmap(dividends_h)(betas_B)


def honest_emission(stake_V, own_VxK, other_VxK, honest_V, honest_K, w_h, w_c, kappa, beta, xi):
  """E_H = xi D(H) + (1 - xi) I(H) for one draw at one (W_H, W_C) (via `single_epoch`)."""
  W_VxK = weights_for(own_VxK, other_VxK, honest_V, w_h, w_c)
  I_K, D_V = single_epoch(stake_V, W_VxK, kappa, beta)
  return xi * jnp.where(honest_V, D_V, 0).sum() + (1 - xi) * jnp.where(honest_K, I_K, 0).sum()


@functools.partial(jax.jit, static_argnames=("n_samples", "n_grid", "batch"))
def emission_grid(key, honest_V, honest_K, honest_stake, sigma_w, kappa, betas_B, *,
                  n_samples: int, n_grid: int, batch: int = 1):
  """I(H) and D(H) at every (draw, W_H, W_C) of one setting, in one compiled call.

  Args:
    key: PRNG key of the draws (the same key gives the same draws for every setting).
    honest_V, honest_K: side masks (`side_masks`).
    honest_stake, sigma_w, kappa: the setting (traced: one compile for all settings).
    betas_B: bonds penalties evaluated together (they share the consensus).
    n_samples: Monte Carlo draws (static).
    n_grid: grid points on [0, 1] for W_H and W_C (static).
    batch: grid points vmapped together inside `lax.map` (static). 1 is fastest on CPU: the
      median's 64 x 448 compare matrix then stays in cache.

  Returns:
    (incentive_SxHxC, dividends_SxHxCxB): honest incentive and honest dividends per draw, W_H,
    W_C (and beta); E_H = xi D(H) + (1 - xi) I(H) (`emission`).
  """
  keys = jax.random.split(key, n_samples)
  nets = jax.vmap(sample_network, in_axes=(0, None, None, None, None))(
      keys, honest_V, honest_K, jnp.asarray(honest_stake, F32), jnp.asarray(sigma_w, F32))
  grid = jnp.linspace(0, 1, n_grid, dtype=F32)
  s, h, c = (x.ravel() for x in jnp.meshgrid(jnp.arange(n_samples), jnp.arange(n_grid),
                                             jnp.arange(n_grid), indexing="ij"))
  kappa, betas_B = jnp.asarray(kappa, F32), jnp.asarray(betas_B, F32)

  def one(idx):
    si, hi, ci = idx
    stake_V, own, other = (x[si] for x in nets)
    return honest_parts(stake_V, own, other, honest_V, honest_K, grid[hi], grid[ci], kappa,
                        betas_B)

  inc, div = jax.lax.map(one, (s, h, c), batch_size=batch)
  return (inc.reshape(n_samples, n_grid, n_grid),
          div.reshape(n_samples, n_grid, n_grid, betas_B.shape[0]))


def emission(incentive_h, dividends_h, xi):
  """E_H = xi D(H) + (1 - xi) I(H) (docs/consensus.md eq. 7 summed over H)."""
  return xi * np.asarray(dividends_h) + (1 - xi) * np.asarray(incentive_h)


def utility_required(emission_SxHxC: np.ndarray, grid_H: np.ndarray,
                     honest_stake: float) -> np.ndarray:
  """Per draw, the smallest W_H where the worst case over W_C reaches E_H >= S_H.

  The crossing is linearly interpolated between the grid points where min_{W_C} E_H - S_H changes
  sign; 0 when it already holds at W_H = 0, nan when it never holds.

  Args:
    emission_SxHxC: E_H per draw, W_H, W_C.
    grid_H: the W_H grid (ascending).
    honest_stake: S_H.

  Returns:
    float64[S].
  """
  f_SxH = np.asarray(emission_SxHxC, np.float64).min(axis=-1) - honest_stake
  ok_SxH = f_SxH >= 0
  first_S = ok_SxH.argmax(axis=-1)
  prev_S = np.maximum(first_S - 1, 0)
  rows = np.arange(f_SxH.shape[0])
  f0, f1 = f_SxH[rows, prev_S], f_SxH[rows, first_S]
  x0, x1 = grid_H[prev_S], grid_H[first_S]
  denom = np.where(f1 != f0, f1 - f0, 1)
  cross_S = np.where(first_S == 0, grid_H[0], x0 + (0 - f0) / denom * (x1 - x0))
  return np.where(ok_SxH.any(axis=-1), cross_S, np.nan)


def settings(honest_stakes=HONEST_STAKES, sweeps=None, baseline=None) -> list[dict]:
  """The unique settings: one parameter at a time from the baseline, at every S_H."""
  sweeps = SWEEPS if sweeps is None else sweeps
  baseline = BASELINE if baseline is None else baseline
  out, seen = [], set()
  for name, values in sweeps.items():
    for v in values:
      for sh in honest_stakes:
        s = dict(baseline, **{name: float(v)}, honest_stake=float(sh))
        k = tuple(s[x] for x in ROW_KEYS[:-1])
        if k not in seen:
          seen.add(k)
          out.append(s)
  return out


def grid_points(step: float) -> int:
  if not 0 < step <= 0.5:
    raise ValueError(f"grid_step: must be in (0, 0.5], got {step}")
  n = round(1 / step)
  if abs(n * step - 1) > 1e-9:
    raise ValueError(f"grid_step: 1 must be a whole number of steps, got {step}")
  return n + 1


def run(*, samples: int = 1, grid_step: float = 0.02, seed: int = 0, honest_stakes=HONEST_STAKES,
        sweeps=None, progress: bool = False, keep_grids=()) -> tuple[list[dict], dict]:
  """Runs the study.

  Args:
    samples: Monte Carlo draws per setting.
    grid_step: step of the W_H and W_C grids on [0, 1].
    seed: PRNG seed (shared by every setting).
    honest_stakes: S_H values.
    sweeps: {parameter: values} varied one at a time from BASELINE (default SWEEPS).
    progress: show a tqdm bar on stderr.
    keep_grids: settings (dicts with the ROW_KEYS but the last) whose mean E_H grid is returned.

  Returns:
    (rows, grids): one row per unique setting with ROW_KEYS plus `reached_fraction` and
    `utility_std` (across draws); grids maps a kept setting's key tuple to its mean E_H grid
    [W_H, W_C].

  Raises:
    ValueError: a bad sample count, grid step or S_H.
  """
  if samples < 1:
    raise ValueError(f"samples: must be >= 1, got {samples}")
  n_grid = grid_points(grid_step)
  grid = np.linspace(0, 1, n_grid)
  key = jax.random.key(seed)
  todo = settings(honest_stakes, sweeps)
  keep = {tuple(float(s[x]) for x in ROW_KEYS[:-1]) for s in keep_grids}
  grids = {}
  # Settings that differ only in beta or xi share one compiled call (the median is the cost).
  groups: dict[tuple, list[dict]] = {}
  for s in todo:
    groups.setdefault((s["honest_stake"], s["sigma_w"], s["kappa"]), []).append(s)
  # Every call evaluates all the betas of the study: one shape, so one compile.
  betas = sorted({s["bonds_penalty"] for s in todo})
  results = {}
  for (sh, sigma_w, kappa), members in tqdm.tqdm(
      groups.items(), desc="consensus_guarantees", unit="group", file=sys.stderr,
      disable=not progress):
    hv, hk = side_masks(sh)
    inc, div = emission_grid(key, jnp.asarray(hv), jnp.asarray(hk), sh, sigma_w, kappa,
                             jnp.asarray(betas, F32), n_samples=samples, n_grid=n_grid)
    inc, div = np.asarray(inc), np.asarray(div)
    for m in members:
      E = emission(inc, div[..., betas.index(m["bonds_penalty"])], m["validator_share"])
      req = utility_required(E, grid, sh)
      reached = np.isfinite(req)
      k = tuple(m[x] for x in ROW_KEYS[:-1])
      results[k] = dict(
          m, honest_utility_required=float(req[reached].mean()) if reached.any() else math.nan,
          reached_fraction=float(reached.mean()),
          utility_std=float(req[reached].std()) if reached.any() else math.nan)
      if k in keep:
        grids[k] = E.mean(axis=0)
  rows = [results[tuple(s[x] for x in ROW_KEYS[:-1])] for s in todo]
  return rows, grids


def table_at(rows: list[dict], honest_stake: float = 0.6) -> list[dict]:
  """The rows at one S_H, one per (parameter, value) of the sweeps, in sweep order."""
  out = []
  for name, values in SWEEPS.items():
    for v in values:
      for r in rows:
        if (abs(r["honest_stake"] - honest_stake) < 1e-9 and r[name] == v and
            all(r[o] == BASELINE[o] for o in BASELINE if o != name)):
          out.append({"parameter": name, "value": v,
                      "honest_utility_required": r["honest_utility_required"],
                      "reached_fraction": r["reached_fraction"]})
  return out


def write_plots(directory, rows: list[dict], grids: dict, grid_step: float) -> list:
  """Contour plots of E_H at S_H = 0.6 and 0.7, the retention lines, and one panel per sweep."""
  from bittensor_jax.studies import figures  # pylint: disable=import-outside-toplevel
  return figures.consensus_figures(directory, rows, grids, grid_step, SWEEPS, BASELINE)


FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_integer("samples", 1, "Monte Carlo draws per setting")
  flags.DEFINE_float("grid_step", 0.02, "step of the W_H and W_C grids on [0, 1]")
  flags.DEFINE_integer("seed", 0, "PRNG seed shared by every setting")
  flags.DEFINE_list("honest_stakes", [str(x) for x in HONEST_STAKES], "S_H values")
  output.define_output_flags()


def main(argv) -> int:
  del argv
  try:
    honest_stakes = tuple(float(x) for x in FLAGS.honest_stakes)
    for sh in honest_stakes:
      side_masks(sh)
    grid_points(FLAGS.grid_step)
    if FLAGS.samples < 1:
      raise ValueError(f"samples: must be >= 1, got {FLAGS.samples}")
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  output.enable_x64()
  start = time.perf_counter()
  keep = [dict(BASELINE, honest_stake=sh) for sh in honest_stakes] if FLAGS.plots else []
  rows, grids = run(samples=FLAGS.samples, grid_step=FLAGS.grid_step, seed=FLAGS.seed,
                    honest_stakes=honest_stakes, progress=True, keep_grids=keep)
  seconds = time.perf_counter() - start
  out_rows = [{k: r[k] for k in ROW_KEYS} for r in rows]
  at = 0.6 if 0.6 in honest_stakes else honest_stakes[0]
  table = (f"honest utility required at S_H = {at} ({FLAGS.samples} draws, grid step "
           f"{FLAGS.grid_step}, {seconds:.1f} s)\n" +
           output.format_table(table_at(rows, at), ("parameter", "value",
                                                   "honest_utility_required",
                                                   "reached_fraction")))
  if FLAGS.csv:
    output.write_csv(FLAGS.csv, rows)
  output.emit(out_rows, as_json=FLAGS.json, csv_path=None, table=table)
  if FLAGS.plots:
    for p in write_plots(output.plots_dir(FLAGS.plots), rows, grids, FLAGS.grid_step):
      print(f"wrote {p}", file=sys.stderr)
  print(f"consensus_guarantees: {len(rows)} settings in {seconds:.1f} s", file=sys.stderr)
  return 0


if __name__ == "__main__":
  define_flags()
  app.run(lambda argv: sys.exit(main(argv)))
