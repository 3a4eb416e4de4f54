"""TAO share rules between subnets: pure functions over the subnet axis S (docs/chain.md §3.4).

Each rule maps per-subnet state to shares_S (non-negative; summing to 1 over the subnets in use, or
all zero when no subnet qualifies) and each can be composed with `hill_gate`:

  price       EMA price, normalized (subtensor coinbase/subnet_emissions.rs::get_shares_price_ema)
  price_burn  EMA price x (1 - MinerBurned) (subnet_emissions.rs::get_shares, the rule of [ST])
  flow        EMA of net TAO inflow, offset by the cutoff, power-normalized
              (subnet_emissions.rs::get_shares_flow, inplace_pow_normalize)
  hill_gate   s·gate(s), gate(s) = s^h/(s^h + θ^h), θ the q-mass bar; renormalized (runtime v440,
              after [ST]; described in the public issue threads, docs/chain.md §3.4)

The chain computes in fixed point (U64F64); these are float64. Unused subnets (mask False) get 0.
"""
# pylint: disable=invalid-name
from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def _normalize(x_S: jax.Array) -> jax.Array:
  total = x_S.sum(-1, keepdims=True)
  return jnp.where(total > 0, x_S / jnp.where(total > 0, total, 1), 0.0)


def price(ema_price_S: jax.Array, mask_S: jax.Array) -> jax.Array:
  """Shares ∝ EMA price over the subnets in use (subnet_emissions.rs::get_shares_price_ema).

  Args:
    ema_price_S: f64[S] SubnetMovingPrice (TAO per alpha, non-negative).
    mask_S: bool[S] subnets that receive emission.

  Returns:
    f64[S] shares: sum 1, or all 0 when every price is 0.
  """
  return _normalize(jnp.where(mask_S, jnp.maximum(ema_price_S, 0.0), 0.0))


def price_burn(ema_price_S: jax.Array, miner_burned_S: jax.Array, mask_S: jax.Array) -> jax.Array:
  """Shares ∝ EMA price x (1 - MinerBurned), renormalized (subnet_emissions.rs::get_shares).

  When every weight is 0 (every subnet burns all of its miner emission) the chain falls back to the
  plain price shares so the block's emission is not stranded; so does this.

  Args:
    ema_price_S: f64[S] SubnetMovingPrice.
    miner_burned_S: f64[S] MinerBurned, the fraction of the last epoch's miner emission paid to
      owner hotkeys (clipped to [0, 1]).
    mask_S: bool[S] subnets that receive emission.

  Returns:
    f64[S] shares summing to 1 (or 0 when every price is 0).
  """
  p_S = price(ema_price_S, mask_S)
  w_S = p_S * (1.0 - jnp.clip(miner_burned_S, 0.0, 1.0))
  return jnp.where(w_S.sum(-1, keepdims=True) > 0, _normalize(w_S), p_S)


def flow(flow_ema_S: jax.Array, mask_S: jax.Array, cutoff: float = 0.0,
         exponent: float = 1.0) -> jax.Array:
  """Shares from the EMA of net TAO inflow (subnet_emissions.rs::get_shares_flow).

  The lower limit is L = max(cutoff, min_i min(flow_i, 0)) (`get_lower_limit`); each subnet's
  offset flow is z_i = max(flow_i - L, 0), and shares are z_i^p / Σ z^p
  (`inplace_pow_normalize`). With the default cutoff 0, a subnet with net outflow gets nothing.

  Args:
    flow_ema_S: f64[S] SubnetEmaTaoFlow, rao per block (signed).
    mask_S: bool[S] subnets that receive emission.
    cutoff: TaoFlowCutoff, rao.
    exponent: FlowNormExponent p >= 1.

  Returns:
    f64[S] shares summing to 1, or all 0 when no subnet has an offset flow above 0 (the chain then
    emits no TAO to any subnet and recycles the block's credit).
  """
  f_S = jnp.where(mask_S, flow_ema_S, 0.0)
  lowest = jnp.min(jnp.where(mask_S, jnp.minimum(f_S, 0.0), 0.0), axis=-1, keepdims=True)
  lower = jnp.maximum(cutoff, lowest)
  z_S = jnp.where(mask_S & (f_S > lower), f_S - lower, 0.0)
  z_S = z_S / jnp.maximum(z_S.max(-1, keepdims=True), 1e-300)  # scale the max to 1 (inplace_scale)
  return _normalize(z_S ** exponent)


def q_mass_bar(shares_S: jax.Array, q) -> jax.Array:
  """θ: sort shares descending; the share at which the cumulative sum first reaches q.

  Args:
    shares_S: f64[S] shares summing to 1.
    q: the q-mass in (0, 1].

  Returns:
    f64[] θ (the smallest share needed to cover mass q).
  """
  desc_S = -jnp.sort(-shares_S, axis=-1)
  cum_S = jnp.cumsum(desc_S, axis=-1)
  # first index whose cumulative mass reaches q (within float rounding of the sum)
  idx = jnp.argmax(cum_S >= q * cum_S[..., -1:] * (1 - 1e-12), axis=-1)
  return jnp.take_along_axis(desc_S, idx[..., None], axis=-1)[..., 0]


def gate_with_bar(shares_S: jax.Array, theta, h) -> jax.Array:
  """s·gate(s) renormalized, gate(s) = s^h / (s^h + θ^h), for a given bar θ (recomputed by the
  caller every `gate_interval` blocks). Zero shares stay zero."""
  s_h = jnp.where(shares_S > 0, shares_S, 0.0) ** h
  theta_h = jnp.asarray(theta, shares_S.dtype)[..., None] ** h
  gate_S = jnp.where(shares_S > 0, s_h / jnp.maximum(s_h + theta_h, 1e-300), 0.0)
  return _normalize(shares_S * gate_S)


def _check_gate_args(q, h) -> None:
  for name, v, ok in (("q", q, lambda x: 0 < x <= 1), ("h", h, lambda x: 0 <= x <= 64)):
    if isinstance(v, jax.core.Tracer):
      continue
    try:
      x = float(v)
    except (TypeError, ValueError) as e:
      raise ValueError(f"hill_gate {name}: expected a number, got {v!r:.60}") from e
    if not (math.isfinite(x) and ok(x)):
      raise ValueError(f"hill_gate {name}: out of range ({'(0, 1]' if name == 'q' else '[0, 64]'})"
                       f", got {v!r:.60}")


def hill_gate(shares_S: jax.Array, q=0.9, h=2.0) -> jax.Array:
  """The Hill emission gate on top of any share rule (runtime v440; docs/chain.md §3.4).

  Each share becomes s·gate(s) with gate(s) = s^h / (s^h + θ^h), θ the q-mass bar (`q_mass_bar`),
  and the result is renormalized. Properties: equal shares stay equal; the output sums to 1; as
  h -> 0 every positive share's gate tends to 1/2, so the gate tends to the identity; a large h
  keeps (almost) only the subnets at or above θ.

  Args:
    shares_S: f64[S] (or [..., S]) non-negative shares summing to 1.
    q: q-mass in (0, 1].
    h: Hill exponent in [0, 64].

  Returns:
    f64[S] gated shares summing to 1 (0 where the input is 0).

  Raises:
    ValueError naming `q` or `h` when a concrete value is out of range.
  """
  _check_gate_args(q, h)
  shares_S = jnp.asarray(shares_S)
  return gate_with_bar(shares_S, q_mass_bar(shares_S, q), h)


def gini(x_S: jax.Array, mask_S: jax.Array | None = None) -> jax.Array:
  """Gini coefficient of non-negative amounts over the masked entries (0 = equal, -> 1 = one takes
  all): Σ_i (2i - n - 1) x_(i) / (n Σ x), x sorted ascending."""
  x_S = jnp.asarray(x_S, jnp.float64)
  mask_S = jnp.ones(x_S.shape, bool) if mask_S is None else mask_S
  n = mask_S.sum(-1)
  xs = jnp.sort(jnp.where(mask_S, x_S, -jnp.inf), axis=-1)  # unused first
  S = x_S.shape[-1]
  rank = jnp.arange(1, S + 1) - (S - n)[..., None]  # 1..n over the used entries
  xs = jnp.where(jnp.isfinite(xs), xs, 0.0)
  total = xs.sum(-1)
  num = ((2 * rank - n[..., None] - 1) * xs).sum(-1)
  return jnp.where(total > 0, num / jnp.maximum(n * total, 1e-300), 0.0)
