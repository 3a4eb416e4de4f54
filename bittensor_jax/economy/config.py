"""The economy's static configuration: regime, share rule, gate and market constants.

Everything here is host-side Python (hashable, static under jit). `EconomyConfig.check()` is the
boundary: a bad value is a ValueError naming the field, before anything is traced. Defaults are the
chain's storage defaults (docs/chain.md §6; subtensor `pallets/subtensor/src/lib.rs`) except where a
field says otherwise.
"""
from __future__ import annotations

import dataclasses
import math

REGIMES = ("single", "root", "dtao")
SHARE_RULES = ("price", "price_burn", "flow")
U16_MAX = 65535
I64_MAX = 2**63 - 1


@dataclasses.dataclass(frozen=True)
class EconomyConfig:
  """Static parameters of the economy between subnets (docs/chain.md §3.3, §3.4, §5.1, §6).

  Attributes:
    regime: "single" (one subnet takes the whole block emission, as the framework did before),
      "root" (the 2024 root epoch, EmissionValues_k ∝ C_k·R_k, docs/chain.md §3.3) or "dtao"
      (per-subnet pools, docs/chain.md §3.4).
    share_rule: the dtao TAO share rule: "price" (EMA price), "price_burn" (EMA price x (1 -
      MinerBurned), subnet_emissions.rs::get_shares) or "flow" (EMA of net TAO inflow,
      subnet_emissions.rs::get_shares_flow).
    gate: apply the Hill gate on top of the share rule (runtime v440, after [ST]).
    gate_q, gate_h: the gate's q-mass and Hill exponent (this project's defaults: the chain's values
      are not in the pinned snapshot).
    gate_interval: blocks between recomputations of the gate bar theta (360).
    tao_weight: TaoWeight, the weight of root TAO stake in stake and root_prop. The chain's storage
      default is 0.0527 (docs/chain.md §6); the SDK displays 0.18. Default 0.18, as the issue asks.
    owner_cut_u16: SubnetOwnerCut (11796 = 18% of alpha_out).
    take_u16: validator (delegate) take, DefaultTake 11796 (18%).
    moving_alpha: SubnetMovingAlpha, the EMA price's per-block weight (3e-6, lib.rs).
    ema_halving_blocks: EMAPriceHalvingBlocks, the young-subnet damping: the EMA weight is
      moving_alpha·b/(b + h) for b blocks since start_call (stake_utils.rs::update_moving_price).
      0 turns the damping off.
    flow_alpha: the flow EMA's per-block weight, FlowEmaSmoothingFactor / i64::MAX
      (29_597_889_189_277 / (2^63 - 1), a one-month half-life).
    flow_cutoff: TaoFlowCutoff in rao (0).
    flow_exponent: FlowNormExponent p (1).
    rho, kappa_u16: Rho (10) and root Kappa (32767) of the root epoch (docs/chain.md §3.3).
    burn_half_life: BurnHalfLife (360 blocks).
    burn_increase_mult: BurnIncreaseMult (1.26).
    min_burn, max_burn, initial_burn: MinBurn, MaxBurn, Burn in rao (0.0005, 100, 0.1 TAO).
    tempo: blocks between subnet epochs (360). All subnets run their epoch on the same block (the
      chain staggers them by netuid mod tempo).
    epoch_dtype: float dtype of the Yuma epoch ("float64" is chain-exact mode).
  """
  regime: str = "dtao"
  share_rule: str = "price_burn"
  gate: bool = False
  gate_q: float = 0.9
  gate_h: float = 2.0
  gate_interval: int = 360
  tao_weight: float = 0.18
  owner_cut_u16: int = 11796
  take_u16: int = 11796
  moving_alpha: float = 3e-6
  ema_halving_blocks: int = 201_600
  flow_alpha: float = 29_597_889_189_277 / I64_MAX
  flow_cutoff: float = 0.0
  flow_exponent: float = 1.0
  rho: float = 10.0
  kappa_u16: int = 32767
  burn_half_life: int = 360
  burn_increase_mult: float = 1.26
  min_burn: int = 500_000
  max_burn: int = 100 * 10**9
  initial_burn: int = 100_000_000
  tempo: int = 360
  epoch_dtype: str = "float64"

  @property
  def rule_name(self) -> str:
    """The share rule's name in tables ("price_burn+gate", or "root"/"single" for those regimes)."""
    if self.regime != "dtao":
      return self.regime
    return self.share_rule + ("+gate" if self.gate else "")

  def check(self) -> "EconomyConfig":
    """Returns self; raises ValueError naming the first field that is out of range."""
    def bad(name, why):
      raise ValueError(f"EconomyConfig.{name}: {why}, got {getattr(self, name)!r}")
    if self.regime not in REGIMES:
      bad("regime", f"expected one of {REGIMES}")
    if self.share_rule not in SHARE_RULES:
      bad("share_rule", f"expected one of {SHARE_RULES}")
    if not isinstance(self.gate, bool):
      bad("gate", "expected a bool")
    floats = {"gate_q": (0.0, 1.0, False), "gate_h": (0.0, 64.0, True),
              "tao_weight": (0.0, 1.0, True), "moving_alpha": (0.0, 1.0, True),
              "flow_alpha": (0.0, 1.0, True), "flow_exponent": (1.0, 16.0, True),
              "rho": (0.0, 1e6, True), "burn_increase_mult": (1.0, 1e6, True),
              "flow_cutoff": (-1e18, 1e18, True)}
    for name, (lo, hi, lo_ok) in floats.items():
      v = getattr(self, name)
      if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        bad(name, "expected a finite number")
      if not ((lo <= v if lo_ok else lo < v) and v <= hi):
        bad(name, f"expected a value in {'[' if lo_ok else '('}{lo}, {hi}]")
    ints = {"gate_interval": (1, 10**9), "owner_cut_u16": (0, U16_MAX), "take_u16": (0, U16_MAX),
            "ema_halving_blocks": (0, 2**62), "kappa_u16": (0, U16_MAX),
            "burn_half_life": (0, U16_MAX), "min_burn": (0, I64_MAX), "max_burn": (0, I64_MAX),
            "initial_burn": (0, I64_MAX), "tempo": (1, U16_MAX)}
    for name, (lo, hi) in ints.items():
      v = getattr(self, name)
      if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        bad(name, f"expected an integer in [{lo}, {hi}]")
    if self.min_burn > self.max_burn:
      bad("min_burn", f"must be <= max_burn ({self.max_burn})")
    if self.epoch_dtype not in ("float32", "float64"):
      bad("epoch_dtype", "expected 'float32' or 'float64'")
    return self
