"""Yuma consensus: one epoch of a subnet as a pure function (docs/chain.md §1, §2).

`epoch(subnet, emission)` follows `epoch/run_epoch.rs::epoch_mechanism` of the current chain
(docs/chain.md Appendix A): activity, stake threshold, old vs new permits, active stake, masks
with presence, the kappa-weighted median, clipping, validator trust, incentive, the bonds penalty,
classic EMA bonds or Yuma3 relative bonds with liquid alpha 2.0, dividends and the emission split.
Variants (static):
  "current"          the chain of docs/chain.md §1 (classic or Yuma3 by `hyper.yuma3_enabled`);
  "yuma1_2023"       the 2023 epoch (docs/chain.md §2.1);
  "liquid_alpha_v1"  classic Yuma, per-column alpha from consensus quantiles (docs/chain.md §2.2).

Dims: N uids, R ledger rows. Row r (uid `row_uid_R[r]`) sets weights, column j receives them.
Speed (benchmarks/RESULTS.md): the weight and bond math runs on the ledger's R rows (docs/chain.md
§1.16, R x N, no N x N gather or scatter),
`yuma3` / `liquid_alpha` choose the bond path statically (`bond_paths`), and the float64 median
searches the I32F32 grid (`kernels.weighted_median_col`). `epoch` returns the ledger fields it does
not write as the input's own arrays.
"""
# pylint: disable=invalid-name
from __future__ import annotations

import functools

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from bittensor_jax.chain import commit_reveal
from bittensor_jax.chain import kernels as K
from bittensor_jax.chain import rows as rows_lib
from bittensor_jax.chain.ledger import Subnet, expand_rows, row_of_N

VARIANTS = ("current", "yuma1_2023", "liquid_alpha_v1")


@flax.struct.dataclass
class EpochOut:
  """Everything an epoch computes, one entry per uid (the keys of docs/scenario_format.md)."""
  stake_N: jax.Array               # normalized S after the threshold
  active_N: jax.Array              # bool
  active_stake_N: jax.Array        # a: S masked by activity and old permits, normalized
  validator_permit_N: jax.Array    # bool, new permits p'
  consensus_N: jax.Array           # C
  validator_trust_N: jax.Array     # Tv
  incentive_N: jax.Array           # I
  dividends_N: jax.Array           # D
  server_emission_N: jax.Array     # i64 rao
  validator_emission_N: jax.Array  # i64 rao
  emission_N: jax.Array            # i64 rao, floor(combined * E)
  bonds_RxN: jax.Array             # i32 stored u16 bonds, on the ledger's rows
  row_uid_R: jax.Array             # i32 the uid of each row (-1 free; docs/chain.md §1.16)

  @property
  def bonds_NxN(self) -> jax.Array:
    """The stored bonds as a dense N x N matrix (uids without a row: zeros)."""
    return expand_rows(self.bonds_RxN, self.row_uid_R, self.stake_N.shape[-1])


def _as(x, dt):
  return jnp.asarray(x).astype(dt)


def _liquid_alpha_v1(consensus_N, in_use_N, lo, hi, dt):
  """Per-column alpha from the consensus quartiles (docs/chain.md §2.2)."""
  n = in_use_N.sum()
  srt = jnp.sort(jnp.where(in_use_N, consensus_N, jnp.inf))

  def quantile(q):
    pos = q * jnp.maximum(n - 1, 0).astype(dt)
    i0 = jnp.floor(pos).astype(jnp.int32)
    i1 = jnp.minimum(i0 + 1, jnp.maximum(n - 1, 0))
    frac = pos - i0
    v0, v1 = srt[i0], srt[i1]
    return v0 + frac * (v1 - v0)

  c_hi, c_lo = quantile(0.75), quantile(0.25)
  ok = c_hi > c_lo
  logit = lambda a: jnp.log(1 / a - 1)
  den = jnp.where(ok, c_lo - c_hi, -1)
  a = (logit(hi) - logit(lo)) / den
  b = logit(lo) + a * c_lo
  alpha = jnp.clip(1 / (1 + jnp.exp(b - a * consensus_N)), lo, hi)
  return ok, alpha


def _permits(subnet: Subnet, variant: str, dt):
  """Activity, I32F32 stake, old and new permits (docs/chain.md §1.2-1.4): the epoch's N-vectors.

  Returns:
    (owner_N, active_N, S_N, p_N, p_new_N): the owner mask, activity, normalized stake S in `dt`,
    the permits the masks use (stored | owner) and the new permits written by this epoch.
  """
  h = subnet.hyper
  legacy = variant == "yuma1_2023"
  N = subnet.in_use_N.shape[-1]
  in_use_N = subnet.in_use_N
  owner_N = (jnp.arange(N) == h.subnet_owner_uid) & in_use_N & (not legacy)
  # 1.2 activity
  cutoff = jnp.maximum(h.activity_cutoff_factor_milli * h.tempo // 1000, 1)
  active_N = in_use_N & (subnet.last_update_N + cutoff >= subnet.block)
  # 1.3 stake: threshold (owner exempt), normalize, truncate to I32F32
  stake_N = jnp.where(in_use_N, subnet.stake_N, 0)
  if not legacy:
    below_N = jnp.floor(stake_N) < h.stake_threshold
    stake_N = jnp.where(below_N & ~owner_N, 0, stake_N)
  S_N = K.i32f32_shares(_as(stake_N, dt))
  # 1.4 permits: masks use the old ones; the new ones are only stored
  p_N = (subnet.permit_N & in_use_N) | owner_N
  if legacy:
    p_new_N = K.is_topk(S_N, h.max_allowed_validators, in_use_N)
  else:
    p_new_N = K.is_topk_nonzero(S_N, h.max_allowed_validators, in_use_N) | owner_N
  return owner_N, active_N, S_N, p_N, p_new_N


def _concrete(tree) -> bool:
  return not any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(tree))


def bond_paths(hyper) -> tuple[bool | None, bool | None]:
  """(yuma3, liquid_alpha) when every subnet of a concrete batch agrees, else None for each.

  The static bond path of `epoch`: a known value computes one bond path instead of both.
  """
  if not _concrete(hyper):
    return None, None
  agree = lambda v: (bool(v.flat[0]) if v.size and (v == v.flat[0]).all() else None)
  return (agree(np.asarray(hyper.yuma3_enabled)), agree(np.asarray(hyper.liquid_alpha_enabled)))


def epoch(subnet: Subnet, emission: jax.Array, *, variant: str = "current", dtype=None,
          yuma3: bool | None = None, liquid_alpha: bool | None = None) -> tuple[Subnet, EpochOut]:
  """Runs one epoch at `subnet.block`, distributing `emission` rao (docs/chain.md §1).

  The weight and bond math runs on the ledger's R rows (R x N, docs/chain.md §1.16): a dense
  ledger (R = N) computes every uid's row, an R < N ledger only the rows its uids hold.

  Args:
    subnet: the ledger before the epoch.
    emission: E, rao to distribute (int64 scalar).
    variant: one of VARIANTS (static).
    dtype: float dtype of the epoch math (static): float64 (default under x64) is chain-exact mode,
      float32 is the fast simulation mode.
    yuma3, liquid_alpha: the values of `hyper.yuma3_enabled` / `hyper.liquid_alpha_enabled` when
      the caller knows them (static, see `bond_paths`): only that bond path is computed. None
      keeps the traced choice (sweeps that mix them). A wrong value gives the other path's bonds.

  Returns:
    The ledger after the epoch (bonds, permits, outputs and `last_epoch_block` written,
    `epoch_count` + 1, rows left holding nothing freed; stake is not changed: paying the amounts
    is `chain.pay`) and the epoch outputs. Due commit-reveal commits are revealed by the caller
    first (`commit_reveal.reveal_due`, as `block_step` and the replay do, docs/chain.md §1.6
    item 4).

  Raises:
    ValueError: an unknown variant.
  """
  if variant not in VARIANTS:
    raise ValueError(f"variant: expected one of {VARIANTS}, got {variant!r}")
  changed, out = _epoch_jit(subnet, emission, variant=variant, dtype=dtype, yuma3=yuma3,
                            liquid_alpha=liquid_alpha)
  # the ledger fields the epoch does not write are the input's own arrays (no copy)
  return subnet.replace(bonds_RxN=out.bonds_RxN, **changed), out


@functools.partial(jax.jit, static_argnames=("variant", "dtype", "yuma3", "liquid_alpha"))
def _epoch_jit(subnet: Subnet, emission: jax.Array, *, variant, dtype, yuma3,
               liquid_alpha) -> tuple[dict, EpochOut]:
  """The compiled epoch: the ledger fields it writes (bonds are `out.bonds_RxN`) and the outputs."""
  dt = jnp.dtype(dtype) if dtype is not None else jnp.result_type(float)
  return _epoch(subnet, emission, variant, dt, yuma3, liquid_alpha)


def _epoch(subnet: Subnet, emission: jax.Array, variant: str, dt, yuma3_static: bool | None,
           liquid_static: bool | None) -> tuple[dict, EpochOut]:
  """The epoch on the ledger's R rows (docs/chain.md §1.16).

  Returns the ledger fields it writes except the bonds (`out.bonds_RxN`), and the outputs.
  Row-indexed arrays carry an R suffix (R = N in the dense case, where row r is uid r).
  """
  h = subnet.hyper
  legacy = variant == "yuma1_2023"
  N = subnet.in_use_N.shape[-1]
  uid_N = jnp.arange(N)
  in_use_N = subnet.in_use_N
  b = subnet.block
  owner_N, active_N, S_N, p_N, p_new_N = _permits(subnet, variant, dt)

  # 1.5 active stake
  a_N = K.i32f32_shares(S_N * active_N * p_N)

  dense = rows_lib.dense(subnet)
  zeros_N = jnp.zeros((N,), dt)
  if dense:  # row r is uid r (a static identity: the program of the all-uids epoch)
    row_R = uid_N
    take = lambda x: x
    put = lambda base, x_R: x_R
    in_use_R, p_R, a_R, owner_R, p_new_R = in_use_N, p_N, a_N, owner_N, p_new_N
  else:
    row_R = subnet.row_uid_R
    taken_R = row_R >= 0
    take = lambda x: x[jnp.maximum(row_R, 0)]
    put = lambda base, x_R: base.at[jnp.where(taken_R, row_R, N)].set(
        x_R.astype(base.dtype), mode="drop")
    in_use_R = take(in_use_N) & taken_R
    p_R, a_R, owner_R = take(p_N) & taken_R, jnp.where(taken_R, take(a_N), 0), take(owner_N)
    p_new_R = take(p_new_N) & taken_R

  # 1.6 weights: presence masks, then row-normalize
  eye = row_R[:, None] == uid_N[None, :]
  diag_keep = eye & owner_R[:, None]
  outdated = take(subnet.last_update_N)[:, None] <= subnet.registered_at_N[None, :]
  c_R = take(commit_reveal.earliest_commit_N(subnet))  # item 4, commit-reveal (drop_NxN's rule)
  cr_drop = (h.commit_reveal_weights_enabled & (c_R[:, None] < subnet.registered_at_N[None, :])
             & (not legacy))
  M = (subnet.has_weight_RxN & in_use_R[:, None] & in_use_N[None, :] & p_R[:, None]
       & ~(eye & ~diag_keep) & ~outdated & ~cr_drop)
  W = K.row_normalize(jnp.where(M, _as(subnet.weights_RxN, dt), 0))

  # 1.7 consensus, 1.8 clipping, trust, incentive
  kappa = K.u16_proportion(h.kappa, dt)
  sigma_N = K.normalize(jnp.where(a_N > 0, a_N, 0))
  if dense:
    C_N = K.weighted_median_col(a_R, W, kappa, unit_interval=True, sigma_V=sigma_N,
                                minority=sigma_N.sum() - kappa)
  else:
    # sigma and the minority over all N uids; the voters without a row score 0 in every column,
    # so they enter as one all-zero row carrying their stake (docs/chain.md §1.16)
    rowless_N = row_of_N(row_R, N) < 0
    sigma_V = jnp.append(jnp.where(taken_R, take(sigma_N), 0),
                         jnp.where(rowless_N, sigma_N, 0).sum())
    W_V = jnp.concatenate([W, jnp.zeros((1, N), W.dtype)])
    C_N = K.weighted_median_col(sigma_V, W_V, kappa, unit_interval=True, sigma_V=sigma_V,
                                minority=sigma_N.sum() - kappa)
  Wc, Mc = K.col_clip(W, C_N, M)
  Tv_N = put(zeros_N, Wc.sum(axis=1))
  I_N = K.normalize(a_R @ Wc)

  # 1.9 weights for bonds (bonds penalty)
  beta = jnp.asarray(1.0, dt) if legacy else K.u16_proportion(h.bonds_penalty, dt)
  Wb = K.interpolate(W, Wc, beta)
  Mb = jnp.where(beta == 0, M, jnp.where(beta == 1, Mc, Wb > 0))

  # 1.10 bonds: old bonds masked by registration since the previous epoch (t0 <= r_j)
  has_bond = subnet.has_bond_RxN
  if legacy:
    keep_old = has_bond & ~outdated
  else:
    t0 = jnp.where(subnet.last_epoch_block != 0, subnet.last_epoch_block + 1,
                   jnp.maximum(b - h.tempo, 0))
    recent_N = t0 <= subnet.registered_at_N
    keep_old = has_bond & ~recent_N[None, :]
  keep_old = keep_old & in_use_R[:, None] & in_use_N[None, :]
  Bq = jnp.where(keep_old, _as(subnet.bonds_RxN, dt), 0)
  # alpha and 1 - alpha each from the integer ppm: bma = 1e6 gives exactly 0 and 1 (kernels.py rule 2)
  alpha_fixed, keep_fixed = K.ppm_proportions(h.bonds_moving_average, dt)

  # the bond path: static when the caller knows yuma3_enabled, else both and a traced choice
  yuma3 = h.yuma3_enabled & (variant == "current")
  if variant != "current" or yuma3_static is False:
    paths = ("classic",)
  elif yuma3_static:
    paths = ("yuma3",)
  else:
    paths = ("classic", "yuma3")

  if "classic" in paths:  # (A) classic
    B_old = K.col_normalize(Bq)
    dB = K.col_normalize(a_R[:, None] * Wb)
    if variant == "liquid_alpha_v1":
      lo, hi = K.u16_proportion(h.alpha_low, dt), K.u16_proportion(h.alpha_high, dt)
      ok, alpha_col = _liquid_alpha_v1(C_N, in_use_N, lo, hi, dt)
      use = ok & h.liquid_alpha_enabled
      alpha_c = jnp.where(use, alpha_col, alpha_fixed)[None, :]
      keep_c = jnp.where(use, 1 - alpha_col, keep_fixed)[None, :]
    else:
      alpha_c, keep_c = alpha_fixed, keep_fixed
    # bma > 1e6 makes alpha < 0: the chain's sparse EMA keeps only positive entries (§1.10)
    Bn_c = K.col_normalize(jnp.maximum(alpha_c * dB + keep_c * B_old, 0))
    D_c = K.normalize(put(zeros_N, Bn_c @ I_N))
    store_c = K.q16(K.col_max_upscale(Bn_c))

  if "yuma3" in paths:  # (B) Yuma3: relative bonds, liquid alpha 2.0
    B0 = K.u16_proportion(Bq, dt)
    Bn_fixed = jnp.maximum(alpha_fixed * Wb + keep_fixed * B0, 0)  # alpha < 0: positives only
    if liquid_static is False:
      Bn_3 = Bn_fixed
    else:
      lo, hi = K.u16_proportion(h.alpha_low, dt), K.u16_proportion(h.alpha_high, dt)
      steep = _as(h.alpha_sigmoid_steepness, dt) / 100
      d = jnp.where(Wb >= B0, jnp.clip(Wb - C_N[None, :], 0, 1), jnp.clip(B0 - Wb, 0, 1))
      x = jnp.clip(-steep * (d - 0.5), -20, 20)
      alpha_e = jnp.clip(lo + (hi - lo) / (1 + jnp.exp(x)), lo, hi)
      liquid = (C_N != 0).any() & (True if liquid_static else h.liquid_alpha_enabled)
      Bn_liquid = K.mat_ema_alpha_sparse(Wb, Mb, B0, alpha_e)
      Bn_3 = jnp.where(liquid, Bn_liquid, Bn_fixed)
    D_3 = K.normalize(put(zeros_N, a_R * (K.col_normalize(Bn_3) @ I_N)))
    store_3 = K.q16(Bn_3)

  if paths == ("classic",):
    D_N, Bn, new_bonds = D_c, Bn_c, store_c
  elif paths == ("yuma3",):
    D_N, Bn, new_bonds = D_3, Bn_3, store_3
  else:
    D_N = jnp.where(yuma3, D_3, D_c)
    Bn = jnp.where(yuma3, Bn_3, Bn_c)
    new_bonds = jnp.where(yuma3, store_3, store_c)

  # bond rows persisted: new permit -> new row; lost permit -> cleared; else unchanged
  lost_R = p_R & ~p_new_R
  live = in_use_R[:, None] & in_use_N[None, :]
  bonds_R = jnp.where(p_new_R[:, None], new_bonds,
                      jnp.where(lost_R[:, None], 0, subnet.bonds_RxN))
  has_bond_R = jnp.where(p_new_R[:, None], Bn > 0, jnp.where(lost_R[:, None], False, has_bond))
  bonds = jnp.where(live, bonds_R, 0).astype(jnp.int32)
  has_bond = has_bond_R & live
  # rows left holding nothing are freed (R < N, docs/chain.md §1.16)
  row_uid_R = (subnet.row_uid_R if dense else
               rows_lib.release(subnet.replace(has_bond_RxN=has_bond)).row_uid_R)

  # 1.11 emission split (split_amounts)
  server_amt, validator_amt, combined_amt = split_amounts(I_N, D_N, a_N, S_N, emission)

  out = EpochOut(
      stake_N=S_N, active_N=active_N, active_stake_N=a_N, validator_permit_N=p_new_N,
      consensus_N=C_N, validator_trust_N=Tv_N, incentive_N=I_N, dividends_N=D_N,
      server_emission_N=server_amt, validator_emission_N=validator_amt,
      emission_N=combined_amt, bonds_RxN=bonds, row_uid_R=row_uid_R)
  f64 = lambda x: x.astype(subnet.consensus_N.dtype)
  changed = dict(
      row_uid_R=row_uid_R, has_bond_RxN=has_bond, permit_N=p_new_N, active_N=active_N,
      consensus_N=f64(C_N), validator_trust_N=f64(Tv_N), incentive_N=f64(I_N),
      dividends_N=f64(D_N), emission_N=out.emission_N, last_epoch_block=b,
      epoch_count=subnet.epoch_count + 1)
  return changed, out


@functools.partial(jax.jit, static_argnames=("variant", "dtype", "chunk", "yuma3",
                                             "liquid_alpha"))
def _epoch_many(subnets, emission_S, *, variant, dtype, chunk, yuma3, liquid_alpha):
  """The mapped epoch: the ledger fields it writes (bonds are `out.bonds_RxN`) and the outputs."""
  one = lambda se: _epoch_jit(se[0], se[1], variant=variant, dtype=dtype, yuma3=yuma3,
                              liquid_alpha=liquid_alpha)
  return jax.lax.map(one, (subnets, jnp.broadcast_to(emission_S, subnets.block.shape)),
                     batch_size=chunk)


def epoch_many(subnets: Subnet, emission_S: jax.Array, *, variant: str = "current", dtype=None,
               chunk: int = 16) -> tuple[Subnet, EpochOut]:
  """The epoch of S independent subnets (a leading S axis on every leaf) in one compiled call.

  `lax.map` over groups of `chunk` vmapped subnets: the same result as `jax.vmap(epoch)`, with the
  working set of a group in cache. On concrete input the bond path is chosen statically when the
  batch agrees on `yuma3_enabled` / `liquid_alpha_enabled` (`bond_paths`). Each epoch runs on the
  ledgers' R rows (docs/chain.md §1.16). benchmarks/consensus.py measures it against a loop of
  single jitted epochs.

  Args:
    subnets: S ledgers stacked on a leading axis.
    emission_S: E per subnet (int64, [S] or a scalar).
    variant, dtype: as in `epoch`.
    chunk: subnets vmapped together inside the `lax.map`.

  Raises:
    ValueError: an unknown variant.
  """
  if variant not in VARIANTS:
    raise ValueError(f"variant: expected one of {VARIANTS}, got {variant!r}")
  yuma3, liquid = bond_paths(subnets.hyper)
  changed, out = _epoch_many(subnets, emission_S, variant=variant, dtype=dtype, chunk=chunk,
                             yuma3=yuma3, liquid_alpha=liquid)
  # the ledger fields the epoch does not write are the input's own arrays (no copy)
  return subnets.replace(bonds_RxN=out.bonds_RxN, **changed), out


def split_amounts(I_N: jax.Array, D_N: jax.Array, a_N: jax.Array, S_N: jax.Array,
                  emission: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """The emission split of docs/chain.md §1.11: rao to servers, to validators, and combined.

  Args:
    I_N, D_N: incentive and dividends (each sums to 1 or is 0).
    a_N, S_N: active stake and stake shares (the fallback when I + D is all 0).
    emission: E, rao (int64 scalar).

  Returns:
    (server_N, validator_N, combined_N) int64 rao: floor(x E) with the 8-ulp snap (kernels rule 3).
  """
  e_N = I_N + D_N
  tot = e_N.sum()
  fallback_N = jnp.where(a_N.sum() > 0, a_N, S_N)
  safe_tot = jnp.where(tot > 0, tot, 1)
  server_N = jnp.where(tot > 0, K.exact_div(I_N, safe_tot), 0)
  validator_N = jnp.where(tot > 0, K.exact_div(D_N, safe_tot), fallback_N)
  combined_N = jnp.where(tot > 0, K.normalize(e_N), fallback_N)
  E = jnp.asarray(emission)
  # floor(x E) in I96F32: exact when x is 1 or an exact fraction, so the floor snaps (kernels rule 3)
  amount = lambda x: K.floor_snap(x.astype(jnp.float64) * E).astype(jnp.int64)
  return amount(server_N), amount(validator_N), amount(combined_N)
