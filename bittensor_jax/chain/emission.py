"""TAO (and alpha) block emission: halving by total issuance (docs/chain.md §3.1).

Chain side only. Every quantity is an integer number of rao and every function is integer exact:
the halving era is found by comparing `21e15 - I` with `21e15 >> k`, never by a float log2.

The functions accept Python ints (and return Python ints), numpy integer arrays (returning numpy
int64) and int64 jax arrays (jittable, returning int64 arrays). jax inputs need
`jax_enable_x64`, because 21e15 rao does not fit in int32.
"""
from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

TOTAL_SUPPLY_RAO = 21 * 10**15            # `TotalSupply`: 21M TAO
DEFAULT_BLOCK_EMISSION_RAO = 10**9        # `DefaultBlockEmission`: 1 TAO per block in era 0
RAO_PER_TAO = 10**9
BLOCK_SECONDS = 12                        # SDK `settings.BLOCKTIME`
BLOCKS_PER_YEAR = 365 * 86400 // BLOCK_SECONDS + 86400 // (4 * BLOCK_SECONDS)  # 365.25 days
CAPPED_ERA = 64                           # era reported once issuance has reached the cap

# `21e15 >> k` for k = 1..63: era k starts once `21e15 - I <= 21e15 >> k`.
_REMAINING_AT_ERA_63 = np.array([TOTAL_SUPPLY_RAO >> k for k in range(1, 64)], dtype=np.int64)


def _issuance(total_issuance_rao: Any) -> tuple[Any, Any]:
  """Validates issuance; returns (value, backend) with backend None (int), np or jnp."""
  if isinstance(total_issuance_rao, (int, np.integer)) and not isinstance(total_issuance_rao, bool):
    value = int(total_issuance_rao)
    if value < 0:
      raise ValueError(f"total_issuance_rao must be >= 0, got {value}")
    return value, None
  if isinstance(total_issuance_rao, (np.ndarray, list, tuple)):
    value = np.asarray(total_issuance_rao)
    if not np.issubdtype(value.dtype, np.integer):
      raise ValueError(f"total_issuance_rao must be integer rao, got dtype {value.dtype}")
    if (value < 0).any():
      raise ValueError("total_issuance_rao must be >= 0")
    return value.astype(np.int64), np
  value = jnp.asarray(total_issuance_rao)
  if not jnp.issubdtype(value.dtype, jnp.integer):
    raise ValueError(f"total_issuance_rao must be integer rao, got dtype {value.dtype}")
  value = value.astype(jnp.int64)
  if value.dtype.itemsize != 8:
    raise ValueError("total_issuance_rao as a jax array needs jax_enable_x64 (int64 rao)")
  return value, jnp


def halving_era(total_issuance_rao: Any) -> Any:
  """Halving count k = floor(log2(1 / (1 - I / 21e15))), integer exact (docs/chain.md §3.1).

  k is the largest k with `(21e15 - I) * 2^k <= 21e15`, i.e. `21e15 - I <= 21e15 >> k`.

  Args:
    total_issuance_rao: total issuance I in rao (int, numpy int array or int64 jax array).

  Returns:
    The era k (same kind as the input); `CAPPED_ERA` (64) once I >= 21e15.

  Raises:
    ValueError: for negative or non-integer Python/numpy issuance.
  """
  issuance, xp = _issuance(total_issuance_rao)
  remaining = TOTAL_SUPPLY_RAO - issuance
  if xp is None:
    if remaining <= 0:
      return CAPPED_ERA
    return sum(1 for r in _REMAINING_AT_ERA_63.tolist() if remaining <= r)
  thresholds = xp.asarray(_REMAINING_AT_ERA_63)
  era = (remaining[..., None] <= thresholds).sum(axis=-1).astype(xp.int64)
  return xp.where(remaining <= 0, CAPPED_ERA, era).astype(xp.int64)


def block_emission(total_issuance_rao: Any) -> Any:
  """Rao minted per block at issuance I: floor(1e9 / 2^k), 0 from 21e15 on (docs/chain.md §3.1).

  Mirrors subtensor `coinbase/block_emission.rs::get_block_emission_for_issuance`; the same
  function gives each subnet's alpha emission from its alpha issuance.

  Args:
    total_issuance_rao: total issuance I in rao (int, numpy int array or int64 jax array).

  Returns:
    Rao per block, same kind as the input.
  """
  issuance, xp = _issuance(total_issuance_rao)
  era = halving_era(issuance)
  if xp is None:
    return 0 if era >= CAPPED_ERA else DEFAULT_BLOCK_EMISSION_RAO >> era
  rate = xp.right_shift(xp.int64(DEFAULT_BLOCK_EMISSION_RAO), xp.minimum(era, 63))
  return xp.where(issuance >= TOTAL_SUPPLY_RAO, 0, rate).astype(xp.int64)


def mint(total_issuance_rao: Any, pending_rao: Any) -> tuple[Any, Any, Any]:
  """One block of minting, capped at `21e15 - I` as the chain's `mint_tao` (docs/chain.md §3.1).

  Args:
    total_issuance_rao: total issuance I in rao before the block.
    pending_rao: pending (not yet paid out) emission in rao; accrues every block (chain.md §3.2).

  Returns:
    (new_issuance_rao, new_pending_rao, minted_rao).
  """
  issuance, xp = _issuance(total_issuance_rao)
  rate = block_emission(issuance)
  if xp is None:
    minted = max(0, min(rate, TOTAL_SUPPLY_RAO - issuance))
  else:
    minted = xp.clip(xp.minimum(rate, TOTAL_SUPPLY_RAO - issuance), 0, None)
  return issuance + minted, pending_rao + minted, minted


def supply_schedule(start_issuance_rao: int = 0) -> list[dict[str, Any]]:
  """Exact era table from `start_issuance_rao` until emission stops (docs/chain.md §3.1).

  Assumes issuance grows by exactly the block emission (no recycling). Era k ends at the first
  block whose issuance reaches `21e15 - (21e15 >> (k+1))`; the era's last block may overshoot
  that threshold, and the next row starts from the issuance actually reached.

  Args:
    start_issuance_rao: issuance at block 0 (genesis: 0).

  Returns:
    One dict per era with positive emission: era, start_issuance_rao, end_issuance_rao,
    rao_per_block, blocks, start_block, years (era length at 12 s blocks), start_year.
  """
  issuance, _ = _issuance(start_issuance_rao)
  rows, block = [], 0
  while (rate := block_emission(issuance)) > 0:
    era = halving_era(issuance)
    next_threshold = TOTAL_SUPPLY_RAO - (TOTAL_SUPPLY_RAO >> (era + 1))
    blocks = -(-(next_threshold - issuance) // rate)
    end = min(issuance + blocks * rate, TOTAL_SUPPLY_RAO)
    rows.append(dict(era=era, start_issuance_rao=issuance, end_issuance_rao=end,
                     rao_per_block=rate, blocks=blocks, start_block=block,
                     years=blocks / BLOCKS_PER_YEAR, start_year=block / BLOCKS_PER_YEAR))
    issuance, block = end, block + blocks
  return rows


def supply_curve(start_issuance_rao: int = 0,
                 years: float | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Issuance (TAO) against years since `start_issuance_rao`, at era ends (docs/chain.md §3.1).

  Issuance is linear inside an era, so linear interpolation between the points is exact up to the
  block granularity.

  Args:
    start_issuance_rao: issuance at year 0.
    years: optional horizon; the curve is cut (interpolated) or extended flat to it.

  Returns:
    (years_P, issuance_tao_P) float64 numpy arrays.
  """
  rows = supply_schedule(start_issuance_rao)
  start_tao = int(start_issuance_rao) / RAO_PER_TAO
  t_P = np.array([0.0] + [(r["start_block"] + r["blocks"]) / BLOCKS_PER_YEAR for r in rows])
  tao_P = np.array([start_tao] + [r["end_issuance_rao"] / RAO_PER_TAO for r in rows])
  if years is not None:
    keep = t_P < years
    t_P, tao_P = np.append(t_P[keep], years), np.append(tao_P[keep], np.interp(years, t_P, tao_P))
  return t_P, tao_P


def plot_supply_schedule(path: str, years: float = 40) -> str:
  """Writes a PNG of TAO issuance and TAO per block against years (docs/chain.md §3.1).

  Args:
    path: output PNG path.
    years: horizon of the plot.

  Returns:
    `path`.
  """
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  t_P, tao_P = supply_curve(0, years)
  rows = [r for r in supply_schedule(0) if r["start_year"] < years]
  fig, ax = plt.subplots(figsize=(9, 5))
  ax.plot(t_P, tao_P / 1e6, color="C0", lw=2, label="total issuance")
  ax.axhline(TOTAL_SUPPLY_RAO / RAO_PER_TAO / 1e6, color="k", ls=":", lw=1, label="21M cap")
  for r in rows[1:]:
    ax.axvline(r["start_year"], color="grey", ls="--", lw=0.8)
    ax.text(r["start_year"], 1.0, f" halving {r['era']}", rotation=90, va="bottom", fontsize=8,
            color="grey")
  ax.set_xlim(0, years)
  ax.set_ylim(0, 22)
  ax.set_xlabel("years since genesis (12 s blocks, no recycling)")
  ax.set_ylabel("issuance (million TAO)")
  rate_ax = ax.twinx()
  edges = [r["start_year"] for r in rows] + [years]
  rates = [r["rao_per_block"] / RAO_PER_TAO for r in rows]
  rate_ax.stairs(rates, edges, color="C1", lw=1.5, label="TAO per block")
  rate_ax.set_ylabel("TAO per block")
  rate_ax.set_ylim(0, 1.1)
  lines = ax.get_legend_handles_labels(), rate_ax.get_legend_handles_labels()
  ax.legend(lines[0][0] + lines[1][0], lines[0][1] + lines[1][1], loc="center right")
  ax.set_title("TAO supply schedule (halving by issuance)")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path

