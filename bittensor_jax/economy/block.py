"""The pure block step of the economy for the `single`, `root` and `dtao` regimes.

One block, in the chain's order (subtensor `coinbase/block_step.rs::block_step`, docs/chain.md
§3.4): registration prices decay -> the block's TAO is minted and shared (`coinbase_terms`) ->
pools, pending buckets and counters move -> the subnets' epochs run when due -> moving prices
update -> the block's extrinsics (`Actions`: stake, unstake, register) apply. The epoch is the
chain's own `yuma.epoch`, vmapped over the subnet axis; everything else is elementwise over S.

  single  one subnet, exactly `chain.block_step` (the framework's behaviour before the economy)
  root    the 2024 root epoch (docs/chain.md §3.3): EmissionValues_k ∝ C_k·R_k, paid as TAO into
          each subnet's pending emission; the subnet epoch splits it 50/50, delegates keep the take
  dtao    docs/chain.md §3.4: TAO shares from the configured rule (+ Hill gate), injection capped
          at root_prop·alpha_emission with the excess buying alpha, alpha halving per subnet, owner
          cut, miner / root / validator split, root dividends recycled while Σ EMA prices <= 1,
          owner-hotkey incentive recycled and counted in MinerBurned

Simplifications (docs/economy.md): all subnets run their epoch on the same block (the chain
staggers by netuid); constant-product pools; nominators stake on validator uid 1; root dividends
are held by root stakers in aggregate (`root_alpha_S`), not swapped to TAO; no childkeys.
"""
# pylint: disable=invalid-name
from __future__ import annotations

import functools

import flax.struct
import jax
import jax.numpy as jnp

from bittensor_jax import chain
from bittensor_jax.chain import emission as emission_lib
from bittensor_jax.chain import yuma
from bittensor_jax.chain.extrinsics import set_weights_rows
from bittensor_jax.economy import delegation, pools, shares, staking
from bittensor_jax.economy import registration_market as market
from bittensor_jax.economy.config import EconomyConfig
from bittensor_jax.economy.state import Economy



@flax.struct.dataclass
class Actions:
  """The block's extrinsics, per subnet (applied after the coinbase, in this order)."""
  stake_tao_S: jax.Array      # i64[S] TAO rao nominators stake on the delegate (from the wallet)
  unstake_alpha_S: jax.Array  # i64[S] alpha rao nominators unstake (at most what they hold)
  register_S: jax.Array       # bool[S] a newcomer registers a neuron, paying the burn

  @classmethod
  def none(cls, S: int) -> "Actions":
    z = jnp.zeros((S,), jnp.int64)
    return cls(stake_tao_S=z, unstake_alpha_S=z, register_S=jnp.zeros((S,), bool))


@flax.struct.dataclass
class Terms:
  """One block's emission per subnet (rao), before any state changes (`coinbase_terms`)."""
  block_emission: jax.Array   # i64[] TAO minted this block
  share_S: jax.Array          # f64[S] TAO shares (after the gate)
  gate_theta: jax.Array       # f64[] gate bar in force
  flow_ema_S: jax.Array       # f64[S] flow EMA after this block's update
  tao_emission_S: jax.Array   # i64[S] floor(share·E)
  tao_in_S: jax.Array         # i64[S] TAO injected into the pool
  excess_tao_S: jax.Array     # i64[S] TAO that buys alpha
  alpha_in_S: jax.Array       # i64[S] alpha injected into the pool
  alpha_emission_S: jax.Array  # i64[S] alpha_out minted (halving of alpha issuance)
  owner_cut_S: jax.Array      # i64[S]
  server_S: jax.Array         # i64[S] to PendingServerEmission
  validator_S: jax.Array      # i64[S] to PendingValidatorEmission
  root_alpha_S: jax.Array     # i64[S] root's part of the validator half
  root_sell: jax.Array        # bool[] Σ EMA price > 1: root alpha paid, else recycled


def _root_epoch_shares(econ: Economy, cfg: EconomyConfig) -> jax.Array:
  """EmissionValues_k ∝ C_k·R_k (docs/chain.md §3.3, root.rs::root_epoch of 2024).

  S_v normalized root stake; W row-normalized root weights; R_k = Σ_v S_v W_vk; T_k = Σ_{v: W_vk>0}
  S_v; C_k = 1 / (1 + exp(-ρ (T_k - κ))), κ = Kappa/65535."""
  s_V = econ.root_tao_V.astype(jnp.float64)
  s_V = s_V / jnp.maximum(s_V.sum(), 1.0)
  W = jnp.where(econ.in_use_S[None, :], econ.root_weights_VxS, 0.0)
  W = W / jnp.maximum(W.sum(1, keepdims=True), 1e-300)
  R_S = s_V @ W
  T_S = s_V @ (W > 0).astype(jnp.float64)
  C_S = jax.nn.sigmoid(cfg.rho * (T_S - cfg.kappa_u16 / 65535.0))
  cr_S = jnp.where(econ.in_use_S, C_S * R_S, 0.0)
  return jnp.where(cr_S.sum() > 0, cr_S / jnp.maximum(cr_S.sum(), 1e-300), 0.0)


def coinbase_terms(econ: Economy, cfg: EconomyConfig) -> Terms:
  """This block's emission per subnet from the state, without changing it (pure).

  For `dtao` (run_coinbase.rs::run_coinbase, get_subnet_terms, emit_to_subnets): E = block
  emission of total issuance (docs/chain.md §3.1, capped at the supply); shares from the rule
  (the flow EMA first absorbs the last block's net flow); the gate bar θ is recomputed on blocks
  that are multiples of `gate_interval` (or when unset); tao_emission = floor(share·E); injection
  capped at root_prop·alpha_emission; alpha_emission = block emission of the subnet's alpha
  issuance; owner cut = alpha_emission·cut; of the rest A: server floor(A/2), root alpha
  floor(root_prop·A/2), validators the remainder. For `root`/`single` only the TAO fields are set.
  """
  S = econ.capacity
  E = jnp.minimum(emission_lib.block_emission(econ.total_issuance),
                  jnp.maximum(emission_lib.TOTAL_SUPPLY_RAO - econ.total_issuance, 0))
  zS = jnp.zeros((S,), jnp.int64)
  flow_ema_S = pools.flow_ema_step(econ.flow_ema_S, econ.flow_block_S, cfg.flow_alpha)
  mask_S = econ.in_use_S
  if cfg.regime == "single":
    share_S = mask_S.astype(jnp.float64) / jnp.maximum(mask_S.sum(), 1)
  elif cfg.regime == "root":
    share_S = _root_epoch_shares(econ, cfg)
  elif cfg.share_rule == "price":
    share_S = shares.price(econ.ema_price_S, mask_S)
  elif cfg.share_rule == "price_burn":
    share_S = shares.price_burn(econ.ema_price_S, econ.miner_burned_S, mask_S)
  else:
    share_S = shares.flow(flow_ema_S, mask_S, cfg.flow_cutoff, cfg.flow_exponent)
  theta = econ.gate_theta
  if cfg.regime == "dtao" and cfg.gate:
    recompute = (econ.block % cfg.gate_interval == 0) | (theta <= 0)
    theta = jnp.where(recompute, shares.q_mass_bar(share_S, cfg.gate_q), theta)
    share_S = shares.gate_with_bar(share_S, theta, cfg.gate_h)
  tao_emission_S = jnp.floor(share_S * E.astype(jnp.float64)).astype(jnp.int64)
  # float rounding must never hand out more than E
  tao_emission_S = jnp.where(tao_emission_S.sum() > E, zS.at[jnp.argmax(share_S)].set(E),
                             tao_emission_S)
  if cfg.regime != "dtao":
    return Terms(E, share_S, theta, flow_ema_S, tao_emission_S, tao_emission_S, zS, zS, zS, zS,
                 zS, zS, zS, jnp.asarray(False))
  spot_S = pools.spot_price(econ.tao_in_S, econ.alpha_in_S)
  alpha_issuance_S = econ.alpha_in_S + econ.alpha_out_S
  alpha_emission_S = jnp.where(mask_S, emission_lib.block_emission(alpha_issuance_S), 0)
  root_prop_S = pools.root_proportion(econ.root_tao_V.sum(), alpha_issuance_S, cfg.tao_weight)
  tao_in_S, alpha_in_S, excess_S = pools.inject(tao_emission_S, spot_S, alpha_emission_S,
                                                root_prop_S)
  cut = cfg.owner_cut_u16 / 65535.0
  owner_S = jnp.floor(alpha_emission_S.astype(jnp.float64) * cut).astype(jnp.int64)
  rest_S = alpha_emission_S - owner_S
  server_S = rest_S // 2
  root_alpha_S = jnp.floor(root_prop_S * rest_S.astype(jnp.float64) * 0.5).astype(jnp.int64)
  root_alpha_S = jnp.clip(root_alpha_S, 0, rest_S - server_S)
  validator_S = rest_S - server_S - root_alpha_S
  root_sell = jnp.where(mask_S, econ.ema_price_S, 0.0).sum() > 1.0
  return Terms(E, share_S, theta, flow_ema_S, tao_emission_S, tao_in_S, excess_S, alpha_in_S,
               alpha_emission_S, owner_S, server_S, validator_S, root_alpha_S, root_sell)


def subnet_emission(econ: Economy, cfg: EconomyConfig, netuid) -> dict[str, jax.Array]:
  """The network hook: what subnet `netuid` receives in the next block, in rao (pure, jittable).

  Computed from the state before `step`, it equals what `step` then adds (tests/economy_block_test).

  Returns:
    dict of int64 scalars: `tao` (TAO emission of the subnet: floor(share·E)), `tao_in`,
    `excess_tao`, `alpha_in` (pool side), `alpha_out` (alpha minted for participants),
    `owner_cut`, `server`, `validator`, `root_alpha`, and `epoch_emission` = server + validator
    (+ root_alpha when Σ EMA prices > 1): the alpha the subnet's epoch will distribute for this
    block. Outside dtao, `epoch_emission` is the TAO emission (the pre-dTAO pending emission).
  """
  t = coinbase_terms(econ.replace(block=econ.block + 1), cfg)  # the block being produced
  pick = lambda x: x[netuid]
  out = dict(tao=pick(t.tao_emission_S), tao_in=pick(t.tao_in_S), excess_tao=pick(t.excess_tao_S),
             alpha_in=pick(t.alpha_in_S), alpha_out=pick(t.alpha_emission_S),
             owner_cut=pick(t.owner_cut_S), server=pick(t.server_S),
             validator=pick(t.validator_S), root_alpha=pick(t.root_alpha_S))
  if cfg.regime == "dtao":
    out["epoch_emission"] = out["server"] + out["validator"] + jnp.where(t.root_sell,
                                                                        out["root_alpha"], 0)
  else:
    out["epoch_emission"] = out["tao"]
  return out


def _epoch_one(sub, nominated_N, pend_server, pend_val, pend_root, root_N, target_NxN, in_use,
               *, cfg: EconomyConfig):
  """One subnet's epoch and payout (docs/chain.md §3.4 item 5; §3.3 for the root regime)."""
  dtao = cfg.regime == "dtao"
  N = sub.in_use_N.shape[-1]
  setter_N = (target_NxN > 0).any(1) & sub.in_use_N
  sub, _ = set_weights_rows(sub, setter_N, target_NxN, target_NxN > 0)
  alpha_N = sub.stake_N
  E = pend_server + pend_val + pend_root if dtao else sub.pending_emission
  weight_N = delegation.stake_weight(alpha_N, root_N, cfg.tao_weight) if dtao else alpha_N
  sub2, out = yuma.epoch(sub.replace(stake_N=weight_N), E, dtype=jnp.dtype(cfg.epoch_dtype))
  server_N = jnp.where(sub.in_use_N, out.server_emission_N, 0)
  val_N = jnp.where(sub.in_use_N, out.validator_emission_N, 0)
  owner_N = jnp.arange(N) == sub.hyper.subnet_owner_uid
  burned = jnp.where(owner_N, server_N, 0).sum() if dtao else jnp.asarray(0, jnp.int64)
  server_total = server_N.sum()
  miner_burned = jnp.where(server_total > 0, burned / jnp.maximum(server_total, 1), 0.0)
  if dtao:
    rp_N = delegation.root_part(alpha_N, root_N, cfg.tao_weight)
    a_N = val_N * (1.0 - rp_N)
    r_N = val_N * rp_N
    A, R, V_tot = a_N.sum(), r_N.sum(), val_N.sum()
    pend = (pend_val + pend_root).astype(jnp.float64)
    frac_root = jnp.where(R > 0, jnp.where(A > 0, pend_root / jnp.maximum(pend, 1.0), 1.0), 0.0)
    target_root = jnp.floor(V_tot * frac_root).astype(jnp.int64)
    target_alpha = V_tot - target_root
    alpha_div_N = jnp.floor(target_alpha * a_N / jnp.maximum(A, 1e-300)).astype(jnp.int64)
    root_div_N = jnp.floor(target_root * r_N / jnp.maximum(R, 1e-300)).astype(jnp.int64)
  else:
    alpha_div_N, root_div_N = val_N, jnp.zeros_like(val_N)
  _, nom_N = delegation.split_dividends(alpha_div_N, alpha_N, nominated_N,
                                        cfg.take_u16 / 65535.0)
  paid_server_N = jnp.where(owner_N & dtao, 0, server_N)
  stake_N = alpha_N + (paid_server_N + alpha_div_N).astype(alpha_N.dtype)
  paid = server_total + alpha_div_N.sum() + root_div_N.sum()
  left = E - paid
  sub2 = sub2.replace(stake_N=stake_N)
  if dtao:
    new = (sub2, nominated_N + nom_N, jnp.zeros_like(pend_server), left, jnp.zeros_like(pend_root),
           root_div_N.sum(), burned, miner_burned)
  else:
    sub2 = sub2.replace(pending_emission=left)
    new = (sub2, nominated_N + nom_N, pend_server, pend_val, pend_root, root_div_N.sum(), burned,
           miner_burned)
  old = (sub, nominated_N, pend_server, pend_val, pend_root, jnp.zeros_like(burned),
         jnp.zeros_like(burned), jnp.asarray(0.0))
  return jax.tree.map(lambda a, b: jnp.where(in_use, a, b), new, old)


def _epochs(econ: Economy, cfg: EconomyConfig) -> Economy:
  """Every subnet's epoch (vmapped over S) and the economy's counters."""
  N = econ.nominated_SxN.shape[1]
  V = econ.root_tao_V.shape[0]
  root_N = jnp.zeros((N,), jnp.float64).at[1:V + 1].set(econ.root_tao_V.astype(jnp.float64))
  sub = econ.subnets
  run = jax.vmap(functools.partial(_epoch_one, cfg=cfg),
                 in_axes=(0, 0, 0, 0, 0, None, 0, 0))
  (sub, nom, ps, pv, pr, root_gain, burned, mb) = run(
      sub, econ.nominated_SxN, econ.pending_server_S, econ.pending_validator_S,
      econ.pending_root_S, root_N, econ.target_weights_SxNxN, econ.in_use_S)
  if cfg.regime != "dtao":
    return econ.replace(subnets=sub, nominated_SxN=nom)
  return econ.replace(
      subnets=sub, nominated_SxN=nom, pending_server_S=ps, pending_validator_S=pv,
      pending_root_S=pr, root_alpha_S=econ.root_alpha_S + root_gain,
      owner_alpha_S=econ.owner_alpha_S + econ.pending_owner_S,
      pending_owner_S=jnp.zeros_like(econ.pending_owner_S),
      alpha_out_S=econ.alpha_out_S - burned, alpha_recycled_S=econ.alpha_recycled_S + burned,
      miner_burned_alpha_S=econ.miner_burned_alpha_S + burned,
      miner_burned_S=jnp.where(econ.in_use_S, mb, econ.miner_burned_S))


def _apply_actions(econ: Economy, cfg: EconomyConfig, act: Actions) -> Economy:
  """Stake, unstake and registration extrinsics, in that order (`staking`)."""
  econ, _ = staking.stake_tao(econ, act.stake_tao_S)
  econ, _ = staking.unstake_alpha(econ, act.unstake_alpha_S)
  return staking.register(econ, cfg, act.register_S)


def step(econ: Economy, cfg: EconomyConfig, actions: Actions | None = None,
         epoch_due=None) -> tuple[Economy, Terms]:
  """One block of the economy (pure; jit with `cfg` static, e.g. through `block_step`).

  Args:
    econ: the state before the block.
    cfg: the static configuration (checked by the caller).
    actions: this block's extrinsics (default none).
    epoch_due: whether the subnets' epochs run this block; default (block + 1) % tempo == 0. A
      caller that vmaps over seeds passes an unbatched value so the epoch stays behind a real
      branch (under vmap a batched predicate would run the epoch every block).

  Returns:
    (econ, terms): the state after the block and this block's emission terms.
  """
  S = econ.capacity
  actions = Actions.none(S) if actions is None else actions
  block = econ.block + 1
  if cfg.regime == "single":
    sub0 = jax.tree.map(lambda x: x[0], econ.subnets)
    sub0, _, _ = chain.block_step(sub0, dtype=jnp.dtype(cfg.epoch_dtype))
    minted = sub0.total_issuance - econ.total_issuance
    subs = jax.tree.map(lambda a, x: a.at[0].set(x), econ.subnets, sub0)
    terms = coinbase_terms(econ, cfg)
    econ = econ.replace(subnets=subs, block=block, total_issuance=sub0.total_issuance,
                        tao_minted=econ.tao_minted + minted,
                        tao_emission_S=econ.tao_emission_S.at[0].add(minted),
                        share_S=terms.share_S)
    return econ, terms
  # the ledgers follow the block (registration immunity and weight blocks read it)
  econ = econ.replace(burn_S=market.decay(econ.burn_S, cfg.burn_half_life, cfg.min_burn,
                                          cfg.max_burn), block=block,
                      subnets=econ.subnets.replace(block=jnp.broadcast_to(block, (S,))))
  t = coinbase_terms(econ, cfg)
  emitted = t.tao_emission_S.sum()
  econ = econ.replace(
      tao_minted=econ.tao_minted + t.block_emission,
      tao_recycled=econ.tao_recycled + t.block_emission - emitted,
      total_issuance=econ.total_issuance + emitted,
      tao_emission_S=econ.tao_emission_S + t.tao_emission_S, share_S=t.share_S,
      gate_theta=t.gate_theta, flow_ema_S=t.flow_ema_S,
      flow_block_S=jnp.zeros_like(econ.flow_block_S))
  if cfg.regime == "root":
    econ = econ.replace(subnets=econ.subnets.replace(
        pending_emission=econ.subnets.pending_emission + t.tao_emission_S,
        total_issuance=jnp.broadcast_to(econ.total_issuance, (S,))))
  else:
    # pool injection, then the excess TAO buys alpha for the protocol
    tao_in = econ.tao_in_S + t.tao_in_S
    alpha_in = econ.alpha_in_S + t.alpha_in_S
    tao_in, alpha_in, bought = pools.stake(tao_in, alpha_in, t.excess_tao_S)
    root_paid = jnp.where(t.root_sell, t.root_alpha_S, 0)
    root_recycled = t.root_alpha_S - root_paid
    econ = econ.replace(
        tao_in_S=tao_in, alpha_in_S=alpha_in, protocol_alpha_S=econ.protocol_alpha_S + bought,
        alpha_out_S=econ.alpha_out_S + bought + t.alpha_emission_S - root_recycled,
        alpha_minted_S=econ.alpha_minted_S + t.alpha_in_S + t.alpha_emission_S,
        alpha_recycled_S=econ.alpha_recycled_S + root_recycled,
        pending_owner_S=econ.pending_owner_S + t.owner_cut_S,
        pending_server_S=econ.pending_server_S + t.server_S,
        pending_validator_S=econ.pending_validator_S + t.validator_S,
        pending_root_S=econ.pending_root_S + root_paid)
  due = (block % cfg.tempo == 0) if epoch_due is None else epoch_due
  econ = jax.lax.cond(due, lambda e: _epochs(e, cfg), lambda e: e, econ)
  if cfg.regime == "dtao":
    weight_S = pools.ema_weight(block - econ.start_block_S, cfg.moving_alpha,
                                cfg.ema_halving_blocks)
    spot_S = pools.spot_price(econ.tao_in_S, econ.alpha_in_S)
    econ = econ.replace(ema_price_S=jnp.where(
        econ.in_use_S, pools.ema_price_step(econ.ema_price_S, spot_S, weight_S), econ.ema_price_S))
    econ = _apply_actions(econ, cfg, actions)
  return econ, t


@functools.partial(jax.jit, static_argnames=("cfg",))
def block_step(econ: Economy, cfg: EconomyConfig, actions: Actions | None = None):
  """`step` compiled, with `cfg` static."""
  return step(econ, cfg, actions)


def run(econ: Economy, cfg: EconomyConfig, blocks: int, *, progress: bool = False,
        every: int = 100) -> tuple[Economy, jax.Array]:
  """`blocks` blocks without extrinsics as one compiled `lax.scan` (host checks first).

  Args:
    econ: the state.
    cfg: the configuration (checked here).
    blocks: number of blocks (>= 1).
    progress: show a tqdm bar, updated from inside the compiled scan every `every` blocks.

  Returns:
    (econ, share_BxS): the final state and each block's TAO shares.

  Raises:
    ValueError naming `blocks` or a config field.
  """
  cfg.check()
  if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 1:
    raise ValueError(f"blocks: expected a positive integer, got {blocks!r:.60}")
  bar = None
  if progress:
    import tqdm  # pylint: disable=import-outside-toplevel
    bar = tqdm.tqdm(total=blocks, unit="block", desc=f"economy {cfg.rule_name}")
  out = _run(econ, cfg, blocks, every, bar is not None,
             (lambda i: bar.update(every)) if bar else None)
  if bar is not None:
    bar.n = blocks
    bar.refresh()
    bar.close()
  return out


def _run(econ, cfg, blocks, every, progress, update):
  def body(e, i):
    e, t = step(e, cfg)
    if progress:
      jax.lax.cond((i + 1) % every == 0, lambda: jax.debug.callback(update, i), lambda: None)
    return e, t.share_S
  return jax.jit(lambda e: jax.lax.scan(body, e, jnp.arange(blocks)))(econ)

