"""Yuma consensus: one epoch of a subnet as a pure function (docs/chain.md §1, §2).

`epoch(subnet, emission)` follows `epoch/run_epoch.rs::epoch_mechanism` of the current chain
(docs/chain.md Appendix A): activity, stake threshold, old vs new permits, active stake, masks
with presence, the kappa-weighted median, clipping, validator trust, incentive, the bonds penalty,
classic EMA bonds or Yuma3 relative bonds with liquid alpha 2.0, dividends and the emission split.
Variants (static):
  "current"          the chain of docs/chain.md §1 (classic or Yuma3 by `hyper.yuma3_enabled`);
  "yuma1_2023"       the 2023 epoch (docs/chain.md §2.1);
  "liquid_alpha_v1"  classic Yuma, per-column alpha from consensus quantiles (docs/chain.md §2.2).

Dims: N uids. Row i sets weights, column j receives them.
"""
# pylint: disable=invalid-name
from __future__ import annotations

import functools

import flax.struct
import jax
import jax.numpy as jnp

from bittensor_jax.chain import commit_reveal
from bittensor_jax.chain import kernels as K
from bittensor_jax.chain.ledger import Subnet

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
  bonds_NxN: jax.Array             # i32 stored u16 bonds


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


@functools.partial(jax.jit, static_argnames=("variant", "dtype"))
def epoch(subnet: Subnet, emission: jax.Array, *, variant: str = "current",
          dtype=None) -> tuple[Subnet, EpochOut]:
  """Runs one epoch at `subnet.block`, distributing `emission` rao (docs/chain.md §1).

  Args:
    subnet: the ledger before the epoch.
    emission: E, rao to distribute (int64 scalar).
    variant: one of VARIANTS (static).
    dtype: float dtype of the epoch math (static): float64 (default under x64) is chain-exact mode,
      float32 is the fast simulation mode.

  Returns:
    The ledger after the epoch (bonds, permits, outputs and `last_epoch_block` written,
    `epoch_count` + 1; stake is not changed: paying the amounts is `chain.pay`) and the epoch
    outputs. Due commit-reveal commits are revealed by the caller first
    (`commit_reveal.reveal_due`, as `block_step` and the replay do, docs/chain.md §1.6 item 4).
  """
  if variant not in VARIANTS:
    raise ValueError(f"variant: expected one of {VARIANTS}, got {variant!r}")
  dt = jnp.dtype(dtype) if dtype is not None else jnp.result_type(float)
  h = subnet.hyper
  legacy = variant == "yuma1_2023"
  N = subnet.in_use_N.shape[-1]
  uid_N = jnp.arange(N)
  in_use_N = subnet.in_use_N
  b = subnet.block
  owner_N = (uid_N == h.subnet_owner_uid) & in_use_N & (not legacy)

  # 1.2 activity
  cutoff = jnp.maximum(h.activity_cutoff_factor_milli * h.tempo // 1000, 1)
  active_N = in_use_N & (subnet.last_update_N + cutoff >= b)

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

  # 1.5 active stake
  a_N = K.i32f32_shares(S_N * active_N * p_N)

  # 1.6 weights: presence masks, then row-normalize
  eye = jnp.eye(N, dtype=bool)
  diag_keep = eye & owner_N[:, None]
  outdated_NxN = subnet.last_update_N[:, None] <= subnet.registered_at_N[None, :]
  cr_drop_NxN = commit_reveal.drop_NxN(subnet) & (not legacy)  # item 4, commit-reveal
  M = (subnet.has_weight_NxN & in_use_N[:, None] & in_use_N[None, :] & p_N[:, None]
       & ~(eye & ~diag_keep) & ~outdated_NxN & ~cr_drop_NxN)
  W = K.row_normalize(jnp.where(M, _as(subnet.weights_NxN, dt), 0))

  # 1.7 consensus, 1.8 clipping, trust, incentive
  kappa = K.u16_proportion(h.kappa, dt)
  C_N = K.weighted_median_col(a_N, W, kappa)
  Wc, Mc = K.col_clip(W, C_N, M)
  Tv_N = Wc.sum(axis=1)
  I_N = K.normalize(a_N @ Wc)

  # 1.9 weights for bonds (bonds penalty)
  beta = jnp.asarray(1.0, dt) if legacy else K.u16_proportion(h.bonds_penalty, dt)
  Wb = K.interpolate(W, Wc, beta)
  Mb = jnp.where(beta == 0, M, jnp.where(beta == 1, Mc, Wb > 0))

  # 1.10 bonds: old bonds masked by registration since the previous epoch (t0 <= r_j)
  if legacy:
    keep_old = subnet.has_bond_NxN & ~outdated_NxN
  else:
    t0 = jnp.where(subnet.last_epoch_block != 0, subnet.last_epoch_block + 1,
                   jnp.maximum(b - h.tempo, 0))
    recent_N = t0 <= subnet.registered_at_N
    keep_old = subnet.has_bond_NxN & ~recent_N[None, :]
  keep_old = keep_old & in_use_N[:, None] & in_use_N[None, :]
  Bq = jnp.where(keep_old, _as(subnet.bonds_NxN, dt), 0)
  # alpha and 1 - alpha each from the integer ppm: bma = 1e6 gives exactly 0 and 1 (kernels.py rule 2)
  alpha_fixed, keep_fixed = K.ppm_proportions(h.bonds_moving_average, dt)

  # (A) classic
  B_old = K.col_normalize(Bq)
  dB = K.col_normalize(a_N[:, None] * Wb)
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
  D_c = K.normalize(Bn_c @ I_N)
  store_c = K.q16(K.col_max_upscale(Bn_c))

  # (B) Yuma3: relative bonds, liquid alpha 2.0
  B0 = K.u16_proportion(Bq, dt)
  lo, hi = K.u16_proportion(h.alpha_low, dt), K.u16_proportion(h.alpha_high, dt)
  steep = _as(h.alpha_sigmoid_steepness, dt) / 100
  d = jnp.where(Wb >= B0, jnp.clip(Wb - C_N[None, :], 0, 1), jnp.clip(B0 - Wb, 0, 1))
  x = jnp.clip(-steep * (d - 0.5), -20, 20)
  alpha_e = jnp.clip(lo + (hi - lo) / (1 + jnp.exp(x)), lo, hi)
  liquid = h.liquid_alpha_enabled & (C_N != 0).any()
  Bn_liquid = K.mat_ema_alpha_sparse(Wb, Mb, B0, alpha_e)
  Bn_fixed = jnp.maximum(alpha_fixed * Wb + keep_fixed * B0, 0)  # alpha < 0: positives only
  Bn_3 = jnp.where(liquid, Bn_liquid, Bn_fixed)
  D_3 = K.normalize(a_N * (K.col_normalize(Bn_3) @ I_N))
  store_3 = K.q16(Bn_3)

  yuma3 = h.yuma3_enabled & (variant == "current")
  D_N = jnp.where(yuma3, D_3, D_c)
  Bn = jnp.where(yuma3, Bn_3, Bn_c)
  new_bonds = jnp.where(yuma3, store_3, store_c)

  # bond rows persisted: new permit -> new row; lost permit -> cleared; else unchanged
  lost_N = p_N & ~p_new_N
  bonds = jnp.where(p_new_N[:, None], new_bonds,
                    jnp.where(lost_N[:, None], 0, subnet.bonds_NxN))
  has_bond = jnp.where(p_new_N[:, None], Bn > 0,
                       jnp.where(lost_N[:, None], False, subnet.has_bond_NxN))
  bonds = jnp.where(in_use_N[:, None] & in_use_N[None, :], bonds, 0).astype(jnp.int32)
  has_bond = has_bond & in_use_N[:, None] & in_use_N[None, :]

  # 1.11 emission split
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

  out = EpochOut(
      stake_N=S_N, active_N=active_N, active_stake_N=a_N, validator_permit_N=p_new_N,
      consensus_N=C_N, validator_trust_N=Tv_N, incentive_N=I_N, dividends_N=D_N,
      server_emission_N=amount(server_N), validator_emission_N=amount(validator_N),
      emission_N=amount(combined_N), bonds_NxN=bonds)
  f64 = lambda x: x.astype(subnet.consensus_N.dtype)
  new = subnet.replace(
      bonds_NxN=bonds, has_bond_NxN=has_bond, permit_N=p_new_N, active_N=active_N,
      consensus_N=f64(C_N), validator_trust_N=f64(Tv_N), incentive_N=f64(I_N),
      dividends_N=f64(D_N), emission_N=out.emission_N, last_epoch_block=b,
      epoch_count=subnet.epoch_count + 1)
  return new, out


@functools.partial(jax.jit, static_argnames=("variant", "dtype", "chunk"))
def epoch_many(subnets: Subnet, emission_S: jax.Array, *, variant: str = "current", dtype=None,
               chunk: int = 16) -> tuple[Subnet, EpochOut]:
  """The epoch of S independent subnets (a leading S axis on every leaf) in one compiled call.

  `lax.map` over groups of `chunk` vmapped subnets: the same result as `jax.vmap(epoch)`, but on
  CPU the working set of a group stays in cache (1024 subnets of 256 uids: 1.2 s against 1.7 s
  for a flat vmap on a 2-core machine, see benchmarks/epoch_vmap.py).
  """
  return jax.lax.map(lambda se: epoch(se[0], se[1], variant=variant, dtype=dtype),
                     (subnets, jnp.broadcast_to(emission_S, subnets.block.shape)),
                     batch_size=chunk)
