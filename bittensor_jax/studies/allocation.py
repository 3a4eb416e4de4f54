"""Allocation backtest: how each TAO share rule spreads emission over many synthetic subnets.

Each rule (EMA price, price x (1 - MinerBurned), EMA TAO flow, each optionally with the Hill gate,
and the 2024 root epoch) runs the same synthetic market: the economy of `bittensor_jax.economy`
with S subnets, seeds vmapped, every run one compiled `lax.scan` over blocks. The processes
(documented so the backtest can be rerun and argued with):

  quality    subnet i has a log-quality x_i, x_i(0) ~ N(0, quality_sd), a random walk with
             per-block step quality_drift (random news).
  demand     stakers want subnet i's pool to hold T_i* = M softmax(x)_i TAO (M = TAO in all pools
             at the start). Each block the net flow is kappa (T_i* - tao_in_i) + noise of standard
             deviation flow_noise·kappa·T_i* (kappa = 1e-3, flow_noise = 1; rao): positive flow
             stakes TAO from the wallet onto the subnet's delegate, negative flow unstakes the
             alpha worth it at the spot price (at most what the market's nominators hold).
  pools      start at T_i(0) = M softmax(x(0) + 0.5 eps)_i TAO against 10^4 alpha each.
  owner burn the owner of subnet i burns b_i of miner emission: b_i = 0 with probability 1/2, else
             U(0, 0.9); the validators weight the owner hotkey b_i and the miners the rest (as
             owners do on mainnet by setting weights to their own uid).
  root       three root validators (1M TAO each) weight the subnets they rate best: each weights
             its top half of the subnets by x_i + noise (root regime only).
  register   a newcomer registers on subnet i with probability (3/360)·S·share_i per block,
             paying the burn (ln 2 / ln 1.26 ≈ 3 registrations per 360 blocks keep it stationary).
  attack     the owner of the subnet at the `attack_quantile` of initial pool TAO stakes
             attack_tao TAO on its own delegate at 1/4 of the run (the pump) and unstakes it all
             at 3/4 (the exit). Its profit = (TAO back + value of its owner cut at the final spot
             price) - staked - (value of the owner cut in the same seed without the attack).

Measures (averaged over seeds, runs without the attack): gini of each subnet's total TAO emission,
subnets_above_1pct (subnets whose total emission share is >= 1%), survival (fraction of subnets
whose emission in the last tenth of the run is at least survival_bar x an equal share), and
attack_profit_tao (mean over seeds; attack_profit_sd its standard deviation over seeds),
attack_profit_pct (of the TAO staked) and attack_wins (the fraction of seeds where it paid).
blocks_per_s counts blocks of the whole S-subnet economy per second, summed over the vmapped runs
(seeds x {no attack, attack}), compile time excluded.

  python -m bittensor_jax.studies.allocation --json
  python -m bittensor_jax.studies.allocation --subnets 16 --blocks 1000 --seeds 2 --csv out.csv
"""
# pylint: disable=invalid-name
from __future__ import annotations

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from bittensor_jax.studies import output

RULES = ("price", "price_burn", "flow", "price+gate", "price_burn+gate", "flow+gate", "root")
ROW_KEYS = ("rule", "gini", "subnets_above_1pct", "survival", "attack_profit_tao",
            "attack_profit_sd", "attack_profit_pct", "attack_wins", "blocks_per_s")
RAO = 10**9


def config_for(rule: str, *, moving_alpha: float = 1e-4, flow_alpha: float = 1e-4,
               tempo: int = 360):
  """The EconomyConfig of a rule name in RULES.

  The study's subnets are mature (no young-subnet damping, ema_halving_blocks = 0), and its EMAs
  are faster than the chain's defaults (moving_alpha 3e-6, flow_alpha 3.2e-6) by default, so a
  run of some thousand blocks spans several EMA half-lives (ln 2 / 1e-4 ≈ 6,931 blocks); pass the
  chain's values to backtest at the chain's pace.
  """
  from bittensor_jax import economy  # pylint: disable=import-outside-toplevel
  if rule not in RULES:
    raise ValueError(f"rule: expected one of {RULES}, got {rule!r}")
  common = dict(tempo=tempo, moving_alpha=moving_alpha, flow_alpha=flow_alpha,
                ema_halving_blocks=0)
  if rule == "root":
    return economy.EconomyConfig(regime="root", **common).check()
  base, _, gate = rule.partition("+")
  return economy.EconomyConfig(regime="dtao", share_rule=base, gate=gate == "gate",
                               **common).check()


def check_args(subnets: int, blocks: int, seeds: int, checkpoints: int, attack_tao: float,
               n_uids: int) -> None:
  """Host-side checks; ValueError naming the flag."""
  if not 2 <= subnets <= 128:
    raise ValueError(f"subnets: expected 2..128, got {subnets}")
  if not 1 <= seeds <= 64:
    raise ValueError(f"seeds: expected 1..64, got {seeds}")
  if checkpoints < 1 or blocks < checkpoints or blocks % checkpoints:
    raise ValueError(f"blocks: expected a positive multiple of checkpoints ({checkpoints}), "
                     f"got {blocks}")
  if not (np.isfinite(attack_tao) and attack_tao >= 0):
    raise ValueError(f"attack_tao: expected a finite number >= 0, got {attack_tao}")
  if not 4 <= n_uids <= 64:
    raise ValueError(f"n_uids: expected 4..64, got {n_uids}")


def init_seed(key, cfg, S: int, n_uids: int, quality_sd: float):
  """One seed's economy and market state (the processes of the module docstring)."""
  from bittensor_jax.economy import state as state_lib  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel())
  N, V = n_uids, 3
  x = rng.normal(0.0, quality_sd, S)
  market = 1000 * S * RAO                       # 1,000 TAO per subnet in pools at the start
  w0 = np.exp(x + 0.5 * rng.normal(size=S))
  pool_tao = np.maximum(np.floor(market * w0 / w0.sum()), RAO).astype(np.int64)
  burn_frac = np.where(rng.random(S) < 0.5, 0.0, rng.uniform(0, 0.9, S))
  miners = rng.uniform(0.5, 1.0, (S, N - V - 1))
  w = np.zeros((S, N, N))
  row = np.concatenate([burn_frac[:, None], np.zeros((S, V)),
                        (1 - burn_frac)[:, None] * miners / miners.sum(1, keepdims=True)], 1)
  w[:, 1:V + 1, :] = row[:, None, :]
  w = np.round(w / np.maximum(w.max(2, keepdims=True), 1e-12) * 65535).astype(np.int64)
  root_w = np.zeros((V, S))
  for v in range(V):
    score = x + rng.normal(0, 0.5, S)
    root_w[v, np.argsort(-score)[:max(1, S // 2)]] = 1.0
  econ = state_lib.create(cfg, capacity=S, in_use=S, n_uids=N, n_validators=V, pool_tao=pool_tao,
                          pool_alpha=10_000 * RAO, validator_alpha=1000 * RAO,
                          root_tao=np.full(V, 10**6 * RAO), wallet_tao=100 * market,
                          weights_SxNxN=w, root_weights_VxS=root_w)
  return econ, dict(x_S=jnp.asarray(x), market=jnp.asarray(float(market)),
                    burn_frac_S=jnp.asarray(burn_frac), pool0_S=jnp.asarray(pool_tao))


def _market_actions(econ, mkt, key, attack_alpha, *, kappa, flow_noise, quality_drift):
  """This block's stake, unstake and registration orders from the demand process."""
  from bittensor_jax.economy import Actions, pools  # pylint: disable=import-outside-toplevel
  S = econ.capacity
  k1, k2, k3 = jax.random.split(key, 3)
  x_S = mkt["x_S"] + quality_drift * jax.random.normal(k1, (S,))
  target_S = mkt["market"] * jax.nn.softmax(x_S)
  tao_S = econ.tao_in_S.astype(jnp.float64)
  flow_S = kappa * (target_S - tao_S) + flow_noise * kappa * target_S \
      * jax.random.normal(k2, (S,))
  spot_S = pools.spot_price(econ.tao_in_S, econ.alpha_in_S)
  stake_S = jnp.floor(jnp.maximum(flow_S, 0)).astype(jnp.int64)
  free_S = jnp.floor(econ.nominated_SxN[:, 1]).astype(jnp.int64) - attack_alpha
  unstake_S = jnp.floor(jnp.maximum(-flow_S, 0) / jnp.maximum(spot_S, 1e-12))
  unstake_S = jnp.clip(unstake_S.astype(jnp.int64), 0, jnp.maximum(free_S, 0))
  p_S = jnp.clip(3.0 / 360.0 * S * econ.share_S, 0.0, 1.0)
  reg_S = jax.random.uniform(k3, (S,)) < p_S
  return Actions(stake_tao_S=stake_S, unstake_alpha_S=unstake_S, register_S=reg_S), \
      dict(mkt, x_S=x_S)


def simulate(cfg, econ0, mkt0, keys, attack_on, target, *, blocks: int, checkpoints: int,
             attack_tao_rao: int, kappa=1e-3, flow_noise=1.0, quality_drift=1e-3,
             progress=None):
  """Every seed x attack flag as one compiled call (vmap over both, `lax.scan` over blocks).

  Args:
    cfg: the EconomyConfig (static).
    econ0, mkt0, keys: per-seed initial economies, market states and PRNG keys (leading axis).
    attack_on: bool[A] attack flags (the inner vmap).
    blocks, checkpoints: run length and how many snapshots of cumulative emission to keep.
    target: int[seeds] the attacked subnet of each seed.
    attack_tao_rao: the pump's stake.
    progress: a callable called with the checkpoint index from inside the scan (tqdm), or None.

  Returns:
    numpy dict with leading axes [seeds, A]: emission_KxS (cumulative TAO emission per subnet at
    each checkpoint), owner_alpha, spot, exit_tao, staked_tao (the attacker's), miner_burned_S;
    and compile_s, run_s (seconds to compile, and to run the compiled call).
  """
  from bittensor_jax.economy import block, pools, staking  # pylint: disable=import-outside-toplevel
  inner = blocks // checkpoints
  t_pump, t_exit = blocks // 4, (3 * blocks) // 4
  S = econ0.in_use_S.shape[-1]

  def one_block(carry, t, atk, target):
    hit_S = jnp.arange(S) == target
    econ, mkt, key, a_alpha, a_in, a_out = carry
    key, sub = jax.random.split(key)
    # the attacker's legs first, as their own swaps (its alpha is not the market's to sell)
    pump = atk & (t == t_pump) & (cfg.regime == "dtao")
    exit_ = atk & (t == t_exit) & (cfg.regime == "dtao")
    econ, bought_S = staking.stake_tao(econ, jnp.where(hit_S & pump, attack_tao_rao, 0))
    econ, got_S = staking.unstake_alpha(econ, jnp.where(hit_S & exit_, a_alpha, 0))
    a_alpha = jnp.where(exit_, 0, a_alpha + bought_S[target])
    a_in = a_in + jnp.where(pump, attack_tao_rao, 0)
    a_out = a_out + got_S[target]
    act, mkt = _market_actions(econ, mkt, sub, a_alpha, kappa=kappa, flow_noise=flow_noise,
                               quality_drift=quality_drift)
    if cfg.regime != "dtao":   # no pools before dTAO: no staking market, no pump
      act = act.replace(stake_tao_S=act.stake_tao_S * 0, unstake_alpha_S=act.unstake_alpha_S * 0,
                        register_S=act.register_S & False)
    # the market's extrinsics, then the block (so inside `step` only the epoch moves nominators)
    econ, _ = staking.stake_tao(econ, act.stake_tao_S)
    econ, _ = staking.unstake_alpha(econ, act.unstake_alpha_S)
    econ = staking.register(econ, cfg, act.register_S)
    nom_before = econ.nominated_SxN[target, 1]
    due = (t + 1) % cfg.tempo == 0
    econ2, _ = block.step(econ, cfg, None, epoch_due=due)
    # nominators' dividends are pro rata: the attacker's alpha grows as the nominators' pool does
    grown = jnp.where(nom_before > 0, econ2.nominated_SxN[target, 1] / jnp.maximum(nom_before, 1.0),
                      1.0)
    a_alpha = jnp.floor(a_alpha * grown).astype(jnp.int64)
    return (econ2, mkt, key, a_alpha, a_in, a_out)

  def run_one(econ, mkt, key, target, atk):
    z = jnp.int64(0)
    carry = (econ, mkt, key, z, z, z)

    def chunk(carry, k):
      def body(c, j):
        return one_block(c, k * inner + j, atk, target), None
      carry, _ = jax.lax.scan(body, carry, jnp.arange(inner))
      if progress is not None:
        jax.debug.callback(progress, k)
      return carry, carry[0].tao_emission_S
    carry, em_KxS = jax.lax.scan(chunk, carry, jnp.arange(checkpoints))
    econ, _, _, _, a_in, a_out = carry
    spot = pools.spot_price(econ.tao_in_S, econ.alpha_in_S)[target]
    return dict(emission_KxS=em_KxS, owner_alpha=econ.owner_alpha_S[target], spot=spot,
                exit_tao=a_out, staked_tao=a_in, miner_burned_S=econ.miner_burned_S)

  batched = jax.vmap(jax.vmap(run_one, in_axes=(None, None, None, None, 0)),
                     in_axes=(0, 0, 0, 0, None))
  t0 = time.time()
  target = jnp.asarray(target, jnp.int32)
  compiled = jax.jit(batched).lower(econ0, mkt0, keys, target, attack_on).compile()
  t1 = time.time()
  res = jax.block_until_ready(compiled(econ0, mkt0, keys, target, attack_on))
  t2 = time.time()
  out = jax.tree.map(np.asarray, res)
  out["compile_s"], out["run_s"] = t1 - t0, t2 - t1
  return out


def summarize(rule: str, res: dict, *, survival_bar: float, blocks: int, n_runs: int) -> dict:
  """The row of one rule from `simulate`'s results (module docstring: Measures)."""
  em = res["emission_KxS"][:, 0].astype(np.float64)          # [seeds, K, S], no attack
  total_S = em[:, -1]
  share_S = total_S / np.maximum(total_S.sum(-1, keepdims=True), 1)
  S = share_S.shape[-1]
  K = em.shape[1]
  last = em[:, -1] - em[:, max(K - 1 - max(K // 10, 1), 0)]
  last_share = last / np.maximum(last.sum(-1, keepdims=True), 1)
  g = np.asarray([gini_np(x) for x in total_S])
  row = dict(rule=rule, gini=float(g.mean()),
             subnets_above_1pct=float((share_S >= 0.01).sum(-1).mean()),
             survival=float((last_share >= survival_bar / S).mean()))
  if rule == "root":
    row.update(attack_profit_tao=float("nan"), attack_profit_sd=float("nan"),
               attack_profit_pct=float("nan"), attack_wins=float("nan"))
  else:
    value = lambda a: (res["exit_tao"][:, a] - res["staked_tao"][:, a]
                       + res["owner_alpha"][:, a] * res["spot"][:, a]) / RAO
    profit = value(1) - value(0)
    staked = res["staked_tao"][:, 1] / RAO
    row.update(attack_profit_tao=float(profit.mean()), attack_profit_sd=float(profit.std()),
               attack_profit_pct=float(100 * (profit / np.maximum(staked, 1e-9)).mean()),
               attack_wins=float((profit > 0).mean()))
  row["blocks_per_s"] = blocks * n_runs / res["run_s"]   # economy-blocks per second, compiled
  return row


def gini_np(x: np.ndarray) -> float:
  """Gini of non-negative amounts (numpy twin of economy.gini)."""
  x = np.sort(np.asarray(x, np.float64))
  n = x.size
  if x.sum() <= 0:
    return 0.0
  return float(((2 * np.arange(1, n + 1) - n - 1) * x).sum() / (n * x.sum()))


def _save(fig, ax, path) -> str:
  """Legend, layout, write the PNG, close the figure; returns the path."""
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return str(path)


def plot(rows_res: dict, path_dir, blocks: int, target) -> list[str]:
  """Two figures: sorted emission shares per rule (log scale), and the attacked subnet's share of
  each checkpoint's emission with and without the pump."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  paths = []
  fig, ax = plt.subplots(figsize=(8, 4.5))
  for rule, res in rows_res.items():
    total = res["emission_KxS"][:, 0, -1].astype(np.float64)
    share = np.sort(total / total.sum(-1, keepdims=True), axis=-1)[:, ::-1].mean(0)
    ax.plot(np.arange(1, share.size + 1), share, label=rule)
  ax.set_yscale("log")
  ax.axhline(0.01, color="grey", ls=":", lw=1)
  ax.set_xlabel("subnet rank")
  ax.set_ylabel("share of total TAO emission")
  ax.set_title(f"Emission concentration by share rule ({blocks} blocks, mean over seeds)")
  paths.append(_save(fig, ax, path_dir / "economy_allocation.png"))
  fig, ax = plt.subplots(figsize=(8, 4.5))
  for i, (rule, res) in enumerate(rows_res.items()):
    if rule == "root":
      continue
    em = res["emission_KxS"].astype(np.float64)                 # [seeds, A, K, S]
    step = np.diff(em, axis=2, prepend=0)
    mine = np.take_along_axis(step, np.asarray(target)[:, None, None, None], axis=-1)[..., 0]
    frac = (mine / np.maximum(step.sum(-1), 1)).mean(0)
    K = frac.shape[-1]
    t = (np.arange(K) + 1) * blocks / K
    ax.plot(t, frac[0], color=f"C{i}", ls=":", lw=1)
    ax.plot(t, frac[1], color=f"C{i}", label=rule)
  ax.axvline(blocks / 4, color="k", lw=0.8)
  ax.axvline(3 * blocks / 4, color="k", lw=0.8)
  ax.set_xlabel("block (pump at 1/4, exit at 3/4; dotted: no attack)")
  ax.set_ylabel("attacked subnet's share of emission")
  ax.set_title("Pump-and-exit: the attacked subnet's TAO share")
  paths.append(_save(fig, ax, path_dir / "economy_attack.png"))
  return paths


FLAGS = flags.FLAGS
flags.DEFINE_integer("subnets", 64, "S, synthetic subnets (2..128)")
flags.DEFINE_integer("blocks", 10000, "blocks per run (a multiple of --checkpoints)")
flags.DEFINE_integer("seeds", 8, "seeds (vmapped)")
flags.DEFINE_integer("checkpoints", 40, "snapshots of cumulative emission per run")
flags.DEFINE_integer("n_uids", 8, "uids per subnet ledger (owner, 3 validators, miners)")
flags.DEFINE_float("attack_tao", 1000.0, "TAO the pump-and-exit attacker stakes")
flags.DEFINE_float("attack_quantile", 0.25, "the attacked subnet's quantile of initial pool TAO")
flags.DEFINE_float("survival_bar", 0.1, "survival: last-tenth emission >= bar x an equal share")
flags.DEFINE_float("quality_sd", 1.0, "sd of the subnets' initial log-quality")
flags.DEFINE_list("rules", list(RULES), f"share rules, from {RULES}")
flags.DEFINE_float("moving_alpha", 1e-4, "EMA price weight per block (chain default 3e-6)")
flags.DEFINE_float("flow_alpha", 1e-4, "flow EMA weight per block (chain default 3.2e-6)")
flags.DEFINE_integer("seed", 0, "base PRNG seed")
flags.DEFINE_bool("progress", True, "tqdm progress bar (stderr)")
output.define_output_flags()


def main(argv):
  del argv
  output.enable_x64()
  try:
    check_args(FLAGS.subnets, FLAGS.blocks, FLAGS.seeds, FLAGS.checkpoints, FLAGS.attack_tao,
               FLAGS.n_uids)
    for r in FLAGS.rules:
      config_for(r, moving_alpha=FLAGS.moving_alpha, flow_alpha=FLAGS.flow_alpha)
    if not 0 <= FLAGS.attack_quantile <= 1:
      raise ValueError(f"attack_quantile: expected [0, 1], got {FLAGS.attack_quantile}")
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  import tqdm  # pylint: disable=import-outside-toplevel
  S, rows, results = FLAGS.subnets, [], {}
  keys = jax.random.split(jax.random.key(FLAGS.seed), FLAGS.seeds)
  for rule in FLAGS.rules:
    cfg = config_for(rule, moving_alpha=FLAGS.moving_alpha, flow_alpha=FLAGS.flow_alpha)
    inits = [init_seed(k, cfg, S, FLAGS.n_uids, FLAGS.quality_sd) for k in keys]
    econ0 = jax.tree.map(lambda *x: jnp.stack(x), *[e for e, _ in inits])
    mkt0 = jax.tree.map(lambda *x: jnp.stack(x), *[m for _, m in inits])
    pool0 = np.asarray(mkt0["pool0_S"])                       # [seeds, S]
    target = np.argsort(pool0, axis=1)[:, int(FLAGS.attack_quantile * (S - 1))]
    bar = tqdm.tqdm(total=FLAGS.checkpoints, desc=rule, unit="ckpt", disable=not FLAGS.progress,
                    file=sys.stderr)
    res = simulate(cfg, econ0, mkt0, keys, jnp.asarray([False, True]), target,
                   blocks=FLAGS.blocks, checkpoints=FLAGS.checkpoints,
                   attack_tao_rao=int(FLAGS.attack_tao * RAO),
                   progress=(lambda k: bar.update(1)) if FLAGS.progress else None)
    bar.close()
    results[rule] = res
    rows.append(summarize(rule, res, survival_bar=FLAGS.survival_bar, blocks=FLAGS.blocks,
                          n_runs=2 * FLAGS.seeds))
  out_dir = output.plots_dir(FLAGS.plots)
  if out_dir is not None:
    plot(results, out_dir, FLAGS.blocks, target)
  output.emit(rows, as_json=FLAGS.json, csv_path=FLAGS.csv,
              table=output.format_table(rows, ROW_KEYS))
  return 0


if __name__ == "__main__":
  app.run(main)
