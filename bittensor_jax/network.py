"""The federated network: servers that learn, validators that judge, one compiled step that pays.

This is where the neuron models and the chain meet; neither knows of the other. One block of
`network_step` is a sequence of named pure phases:
  exchange  "average" / "diloco" (`exchange.py`): every `sync_every` blocks the network model
            takes an outer step on the servers' models, weighted by the chain's incentive or
            stake, and the servers continue from it;
  train     every model runs `local_steps` optimizer steps on its private shard ("distill":
            towards the network ensemble on its own text); copiers refresh a lagged copy;
  query     every validator queries every server (or k of them) with its held-out text and a
            fixed probe, and catches answers that replay another server's earlier answer; each
            answer is reduced at once to what scoring reads (the target bytes' log-probs), so
            no V x K x B x L x 256 tensor of log-probs is kept;
  score     each validator values the answers (`network.scoring`: loss, leave-one-out,
            permutation-sampled Shapley, or delta against the network model), refits its
            ensemble (EM) and updates moving averages;
  weights   every `weights_rate` blocks the validators set weights through the SDK-side
            processing (max-weight limit, u16) and the chain-side checks;
  chain     the chain mints the block emission and, every `tempo` blocks, runs Yuma;
  evaluate  every `eval_every` blocks every model and the network ensemble on the test split;
  register  every `registration_interval` blocks a newcomer takes the pruned uid (from the
            network model where there is one); its slot's twin restarts with it.

A phase that is not due in a block computes nothing (`lax.cond`, outside any vmap): exchange,
weights, the copiers' refresh, registration and evaluation; the chain's epoch likewise.

Only parameters or outputs move between neurons: no phase reads one model's shard for another
(`network_test.test_servers_never_read_each_others_shards`).

Dims: N uids (validators 0..V-1, servers V..V+K-1), V validators, K servers, M stacked models
(K servers, then the isolated twins of `twins`, then padding to a multiple of the device count),
B query batch, L sequence length, X vocabulary, H copy window, P probe bytes, W test windows.
"""
# pylint: disable=invalid-name
from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from bittensor_jax import chain, data, distributed, economy, evaluation, exchange, scoring
from bittensor_jax.economy import staking as economy_staking
from bittensor_jax.chain import emission, ledger, registration
from bittensor_jax import weights
from bittensor_jax.neurons import train, transformer

RAO = emission.RAO_PER_TAO
# Server behaviours (scoring codes; COPIER answers with a lagged copy of its target's model).
HONEST, NOISE, OFFLINE, COPIER = scoring.HONEST, scoring.NOISE, scoring.OFFLINE, scoring.COPIER
# Validator scorers (`network.scoring`); "value" is the old name of "loo".
SCORINGS = ("loss", "loo", "value", "shapley", "delta")
# where the subnet's block emission comes from: "none" (the whole block emission, docs/chain.md
# §3.1) or the share rule of an economy of `economy_subnets` subnets (docs/economy.md)
ECONOMY_RULES = ("none", "price", "price_burn", "flow", "price+gate", "price_burn+gate",
                 "flow+gate", "root")
BEHAVIOURS = ("honest", "noise", "offline", "copier")
# Validator behaviours.
V_HONEST, V_LAZY, V_CABAL = 0, 1, 2
VALIDATOR_BEHAVIOURS = ("honest", "lazy", "cabal")
# Chain proportions stored as u16 (docs/chain.md §6) that a config may give as fractions.
U16_PROPORTIONS = ("kappa", "bonds_penalty", "alpha_low", "alpha_high")
DEFAULT_VALIDATOR_STAKE_TAO = 1000.0


def _is_a(value, kind) -> bool:
  if kind is bool:
    return isinstance(value, (bool, np.bool_))
  if isinstance(value, (bool, np.bool_)):
    return False
  if kind is int:
    return isinstance(value, (int, np.integer))
  if kind is float:  # an int is a fine float; nan and inf are not
    return isinstance(value, (int, float, np.integer, np.floating)) and math.isfinite(value)
  if kind is tuple:
    return isinstance(value, tuple) and all(_is_a(v, float) for v in value)
  return isinstance(value, kind)


def check_types(obj, prefix: str) -> None:
  """Checks every field of a config dataclass against its (resolved) type annotation.

  ml_collections already keeps an override's type equal to the config file's; this catches a
  config file or a plain dict that gives the wrong type (bools are not numbers, floats must be
  finite, tuples hold numbers).

  Raises:
    ValueError: naming `prefix.field`, the expected type and the value.
  """
  hints = typing.get_type_hints(type(obj))
  for f in dataclasses.fields(obj):
    value, hint = getattr(obj, f.name), hints[f.name]
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    kinds = typing.get_args(hint) if union else (hint,)
    if value is None and type(None) in kinds:
      continue
    kinds = tuple(k for k in kinds if k is not type(None))
    if not any(_is_a(value, k) for k in kinds):
      names = " or ".join(getattr(k, "__name__", str(k)) for k in kinds)
      raise ValueError(f"{prefix}.{f.name}: expected {names}, got {value!r}")


def u16_proportion(value, field: str = "value") -> int:
  """A chain proportion as its stored u16: a float in [0, 1] is a fraction, an int is the u16.

  Fractions truncate, as btcli's `float_to_u16` does (`int(value * 65535)`): 0.5 -> 32767 (the
  chain's default kappa), 1.0 -> 65535, 0.7 -> 45874. An integral float above 1 (a ConfigDict
  field holding a float turns `--config.network.kappa=32767` into 32767.0) is the u16 itself.
  The one ambiguous spelling is 1 vs 1.0: the int 1 is the u16 1, the float 1.0 the fraction 1.

  Args:
    value: an int in [0, 65535] or a float in [0, 1] (or an integral float in [1, 65535]).
    field: the name used in the error message.

  Returns:
    The stored u16 value.

  Raises:
    ValueError: anything else, naming `field`.
  """
  if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer,
                                                                    np.floating)):
    raise ValueError(f"{field}: expected a fraction in [0, 1] or a u16 integer, got {value!r}")
  if isinstance(value, (float, np.floating)):
    if not np.isfinite(value):
      raise ValueError(f"{field}: must be finite, got {value!r}")
    if 0.0 <= value <= 1.0:
      return int(float(value) * ledger.U16_MAX)
    if float(value) != int(value):
      raise ValueError(f"{field}: {value!r} is neither a fraction in [0, 1] nor a u16 integer")
  if not 0 <= int(value) <= ledger.U16_MAX:
    raise ValueError(f"{field}: {value!r} is outside the u16 range [0, {ledger.U16_MAX}] "
                     f"(or give a fraction in [0, 1])")
  return int(value)


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
  """Everything that shapes a network; hashable, so it can be closed over by jit."""
  # population
  num_validators: int = 2
  num_servers: int = 6
  noise_servers: int = 1
  offline_servers: int = 1
  copier_servers: int = 1
  lazy_validators: int = 0
  cabal_validators: int = 0
  cabal_servers: int = 0            # the last servers belong to the cabal
  validator_stake_tao: tuple = ()   # per validator; default 1000 TAO each
  cabal_stake_share: float | None = None  # if set: the cabal validators' share of the stake
  deregister_validators: bool = False     # may server churn (registration) prune a validator?
  # data and models
  data_dir: str | None = None
  skew: float = 0.5
  eval_fraction: float = 0.1
  amount_spread: float = 4.0
  max_server_tokens: int | None = 200_000
  max_eval_tokens: int | None = 50_000
  model: transformer.ModelConfig = transformer.ModelConfig(width=32, depth=1, heads=2, context=64)
  train: train.TrainConfig = train.TrainConfig(lr=3e-3, schedule="constant")
  local_steps: int = 1
  batch: int = 8
  seq_len: int = 32
  lr_spread: float = 3.0            # server lr scale is log-uniform in [1/lr_spread, 1]
  copy_lag: int = 10
  # knowledge exchange (`exchange.py`)
  exchange: str = "none"            # "none", "distill", "average" or "diloco"
  distill_weight: float = 0.5       # KL weight of exchange "distill"
  sync_every: int = 10              # blocks between syncs of "average" / "diloco"
  average_by: str = "incentive"     # contributions to the network model: "incentive" or "stake"
  outer_lr: float = 0.7             # diloco's outer Nesterov SGD
  outer_momentum: float = 0.9
  # evaluation (`evaluation.py`)
  twins: str = "all"                # isolated twins: "all" server slots, "one", "none"
  test_bytes: int = 32_768          # the fixed test split
  eval_every: int = 200             # blocks between test-split evaluations
  ngram_order: int = 3              # the n-gram yardstick
  # validators
  scoring: str = "loo"              # "loss", "loo" (leave-one-out; "value" is an alias),
                                    # "shapley" or "delta" (average / diloco only)
  shapley_permutations: int = 16    # orderings per query (antithetic pairs)
  copy_window: int = 16             # blocks of probe answers kept to catch lagging copies
  copy_tolerance: float = 1e-4      # nats: answers closer than this are the same answer
  probe_windows: int = 1            # fixed probe windows each validator asks every block
  query_batch: int = 4
  query_k: int = 0                  # servers queried per block (0 = all)
  score_decay: float = 0.9
  mix_em_steps: int = 2             # EM steps per block fitting each validator's ensemble
  temperature: float = 0.1
  weights_rate: int = 5
  max_weight_limit: float = 1.0
  min_allowed_weights: int = 1
  # chain
  tempo: int = 10
  kappa: float | int = 32767           # fraction in [0, 1] or stored u16 (`u16_proportion`)
  bonds_penalty: float | int = 65535   # fraction or u16
  bonds_moving_average: int = 900000
  yuma3: bool = False
  liquid_alpha: bool = False
  alpha_low: float | int = 45875       # liquid alpha bounds: fraction or u16
  alpha_high: float | int = 58982
  immunity_period: int = 50
  min_non_immune_uids: int = 0
  max_allowed_validators: int = 64
  registration_interval: int = 0    # blocks between registrations (0 = none)
  variant: str = "current"
  epoch_dtype: str = "float64"
  economy: str = "none"             # ECONOMY_RULES: the subnet is netuid 0 of an economy
  economy_subnets: int = 16         # subnets in that economy (2..128)
  seed: int = 0

  def __post_init__(self):
    check_types(self, "network")
    check = lambda ok, field, msg: None if ok else _fail(field, msg)
    check(self.num_validators >= 1, "num_validators", "must be >= 1")
    check(self.num_servers >= 2, "num_servers", "must be >= 2")
    unhelpful = self.noise_servers + self.offline_servers + self.copier_servers
    check(min(self.noise_servers, self.offline_servers, self.copier_servers) >= 0,
          "noise_servers", "counts of unhelpful servers must be >= 0")
    check(unhelpful < self.num_servers, "noise_servers",
          f"noise + offline + copier servers ({unhelpful}) must leave an honest server "
          f"among num_servers={self.num_servers}")
    check(self.lazy_validators + self.cabal_validators <= self.num_validators,
          "lazy_validators", "lazy + cabal validators exceed num_validators")
    check(0 <= self.cabal_servers <= self.num_servers, "cabal_servers", "out of range")
    check(not self.validator_stake_tao or len(self.validator_stake_tao) == self.num_validators,
          "validator_stake_tao", f"needs one entry per validator ({self.num_validators})")
    check(all(np.isfinite(s) and s >= 0 for s in self.validator_stake_tao),
          "validator_stake_tao", "stakes must be finite and >= 0")
    check(self.scoring in SCORINGS, "scoring", f"must be one of {SCORINGS}, got {self.scoring!r}")
    check(self.exchange in exchange.MODES, "exchange",
          f"must be one of {exchange.MODES}, got {self.exchange!r}")
    check(self.scoring != "delta" or self.exchange in exchange.SYNCING, "scoring",
          f"'delta' needs a network model: network.exchange in {exchange.SYNCING}, "
          f"got {self.exchange!r}")
    check(self.average_by in exchange.AVERAGE_BY, "average_by",
          f"must be one of {exchange.AVERAGE_BY}, got {self.average_by!r}")
    check(self.economy in ECONOMY_RULES, "economy",
          f"must be one of {ECONOMY_RULES}, got {self.economy!r}")
    check(2 <= self.economy_subnets <= 128, "economy_subnets",
          f"must be in [2, 128], got {self.economy_subnets}")
    check(self.twins in evaluation.TWINS, "twins",
          f"must be one of {evaluation.TWINS}, got {self.twins!r}")
    check(self.exchange != "distill" or self.distill_weight > 0, "distill_weight",
          "must be > 0 with exchange 'distill'")
    check(self.distill_weight >= 0, "distill_weight", "must be >= 0")
    check(self.outer_lr > 0, "outer_lr", "must be > 0")
    check(0 <= self.outer_momentum < 1, "outer_momentum", "must be in [0, 1)")
    check(self.shapley_permutations >= 2 and self.shapley_permutations % 2 == 0,
          "shapley_permutations", "must be an even number >= 2 (antithetic pairs)")
    check(self.copy_tolerance >= 0, "copy_tolerance", "must be >= 0")
    check(self.test_bytes >= self.seq_len + 1, "test_bytes",
          f"must hold at least one window of seq_len + 1 = {self.seq_len + 1} bytes")
    check(1 <= self.ngram_order <= 7, "ngram_order", "must be in [1, 7]")
    for name in ("sync_every", "eval_every", "copy_window", "probe_windows"):
      check(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
    check(self.weights_rate >= 1, "weights_rate", "must be >= 1")
    check(self.tempo >= 1, "tempo", "must be >= 1")
    check(0 < self.max_weight_limit <= 1, "max_weight_limit", "must be in (0, 1]")
    check(self.seq_len <= self.model.context, "seq_len", "must be <= model.context")
    check(self.local_steps >= 0, "local_steps", "must be >= 0")
    check(0 <= self.query_k <= self.num_servers, "query_k", "must be in [0, num_servers]")
    check(0 <= self.score_decay < 1, "score_decay", "must be in [0, 1)")
    check(self.epoch_dtype in ("float32", "float64"), "epoch_dtype", "float32 or float64")
    check(self.copy_lag >= 1, "copy_lag", "must be >= 1")
    for name in ("batch", "seq_len", "query_batch", "mix_em_steps"):
      check(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
    check(self.min_allowed_weights >= 0, "min_allowed_weights", "must be >= 0")
    check(self.registration_interval >= 0, "registration_interval", "must be >= 0")
    check(self.immunity_period >= 0, "immunity_period", "must be >= 0")
    check(0 <= self.bonds_moving_average <= 1_000_000, "bonds_moving_average",
          f"must be in [0, 1000000] (millionths), got {self.bonds_moving_average}")
    check(0 < self.eval_fraction < 1, "eval_fraction", "must be in (0, 1)")
    check(self.lr_spread >= 1, "lr_spread", "must be >= 1")
    check(self.temperature > 0, "temperature", "must be > 0")
    u16 = {name: u16_proportion(getattr(self, name), f"network.{name}")
           for name in U16_PROPORTIONS}
    check(u16["alpha_low"] <= u16["alpha_high"], "alpha_low",
          f"must be <= alpha_high ({u16['alpha_low']} > {u16['alpha_high']} as u16)")
    if self.cabal_stake_share is not None:
      check(0 < self.cabal_stake_share < 1, "cabal_stake_share", "must be in (0, 1)")
      check(0 < self.cabal_validators < self.num_validators, "cabal_stake_share",
            "needs at least one cabal and one non-cabal validator (network.cabal_validators)")

  def u16(self, name: str) -> int:
    """A chain proportion field (`U16_PROPORTIONS`) as the stored u16."""
    return u16_proportion(getattr(self, name), f"network.{name}")

  def validator_stake_tao_V(self) -> np.ndarray:
    """f64[V] initial validator stake in TAO: `validator_stake_tao` (default 1000 each), then
    rescaled so the cabal holds `cabal_stake_share` of the total when that is set."""
    V = self.num_validators
    stake = np.asarray(self.validator_stake_tao or [DEFAULT_VALIDATOR_STAKE_TAO] * V, np.float64)
    if self.cabal_stake_share is not None:
      cabal = self.validator_behaviours() == V_CABAL
      total = stake.sum()
      stake = np.where(cabal, total * self.cabal_stake_share / cabal.sum(),
                       total * (1 - self.cabal_stake_share) / (~cabal).sum())
    return stake

  @property
  def num_uids(self) -> int:
    return self.num_validators + self.num_servers

  def server_behaviours(self) -> np.ndarray:
    K = self.num_servers
    b = np.full(K, HONEST, np.int32)
    end = K
    for code, count in ((COPIER, self.copier_servers), (OFFLINE, self.offline_servers),
                        (NOISE, self.noise_servers)):
      b[end - count:end] = code
      end -= count
    return b

  def validator_behaviours(self) -> np.ndarray:
    V = self.num_validators
    b = np.full(V, V_HONEST, np.int32)
    b[V - self.cabal_validators:] = V_CABAL
    b[V - self.cabal_validators - self.lazy_validators:V - self.cabal_validators] = V_LAZY
    return b


def _fail(field, msg):
  raise ValueError(f"network.{field}: {msg}")


@flax.struct.dataclass
class NetworkState:
  subnet: ledger.Subnet
  params: Any                  # f32[M, ...] stacked models: K servers, then twins, then padding
  opt_state: Any               # [M, ...]
  scores_VxK: jax.Array        # f32 moving-average scores (loss, loo, shapley or delta)
  mix_VxK: jax.Array           # f32 each validator's ensemble weights over servers (EM-fitted)
  behaviour_K: jax.Array       # i32 server behaviours
  copy_target_K: jax.Array     # i32 whose model each copier copies
  lr_scale_M: jax.Array        # f32 (a twin has its slot's)
  key: jax.Array               # typed PRNG key; per-block keys are fold_in(key, block)
  retired_stake: jax.Array     # f64 stake of deregistered neurons (kept for conservation)
  deregistered_5: jax.Array    # i32 counts: honest, noise, offline, copier servers; validators
  registrations: jax.Array     # i32
  global_params: Any           # the network model of "average" / "diloco" (no M axis)
  outer_state: Any             # its outer optimizer's state (`exchange.outer_optimizer`)
  probe_VxHxKxP: jax.Array     # f32 each validator's last H probe answers (target log-probs)
  caught_VxK: jax.Array        # i32 the last block each validator caught a server copying
  test: dict                   # the latest test-split evaluation (`evaluation.evaluate`)
  test_block: jax.Array        # i32 the block of that evaluation (-1: none yet)
  econ: Any = None             # the economy the subnet is netuid 0 of (None: network.economy none)


@flax.struct.dataclass
class NetworkData:
  server_tokens_MxT: jax.Array  # i32 each model's private shard (a twin: its slot's)
  server_lengths_M: jax.Array
  eval_tokens_VxT: jax.Array    # i32 validators' held-out text
  eval_lengths_V: jax.Array
  probe_VxPxL1: jax.Array       # i32 each validator's fixed probe windows (from its own text)
  test_windows_WxL1: jax.Array  # i32 the test split (`evaluation.test_windows`)


NEVER = -(2**30)  # "never caught" block


def model_slots(cfg: NetworkConfig, num_devices: int = 1) -> np.ndarray:
  """The server slot each stacked model belongs to: i64[M] (servers, twins, padding -> 0)."""
  twins = evaluation.twin_slots(cfg.twins, cfg.server_behaviours())
  slots = np.concatenate([np.arange(cfg.num_servers), twins])
  m = -(-len(slots) // num_devices) * num_devices
  return np.concatenate([slots, np.zeros(m - len(slots), np.int64)]).astype(np.int64)


def num_models(cfg: NetworkConfig, num_devices: int = 1) -> int:
  return len(model_slots(cfg, num_devices))


def twin_models(cfg: NetworkConfig) -> np.ndarray:
  """The model index of each slot's twin, -1 where the slot has none: i64[K]."""
  K = cfg.num_servers
  twins = evaluation.twin_slots(cfg.twins, cfg.server_behaviours())
  out = np.full(K, -1, np.int64)
  out[twins] = K + np.arange(len(twins))
  return out


def _shards(cfg: NetworkConfig) -> data.Shards:
  docs = data.load_corpus(cfg.data_dir)
  return data.make_shards(docs, cfg.num_servers, cfg.num_validators, skew=cfg.skew,
                          eval_fraction=cfg.eval_fraction, seed=cfg.seed,
                          amount_spread=cfg.amount_spread,
                          max_server_tokens=cfg.max_server_tokens,
                          max_eval_tokens=cfg.max_eval_tokens, test_bytes=cfg.test_bytes)


def build_data(cfg: NetworkConfig, num_devices: int = 1) -> NetworkData:
  """Loads the corpus and deals private shards, validator text and the test split (host side)."""
  shards = _shards(cfg)
  need = cfg.seq_len + 1
  short = np.nonzero(np.asarray(shards.server_lengths_K) < need)[0]
  if len(short):
    raise ValueError(f"network.seq_len: server shards {short.tolist()} hold fewer than "
                     f"seq_len + 1 = {need} bytes; use more text or a shorter seq_len")
  probe_need = cfg.probe_windows * need
  if int(np.min(shards.eval_lengths_V)) < probe_need:
    raise ValueError(f"network.probe_windows: a validator's text holds fewer than "
                     f"probe_windows * (seq_len + 1) = {probe_need} bytes")
  rows = model_slots(cfg, num_devices)
  tok = np.asarray(shards.server_tokens_KxT).astype(np.int32)[rows]
  eval_VxT = np.asarray(shards.eval_tokens_VxT, np.int32)
  probe = eval_VxT[:, :probe_need].reshape(cfg.num_validators, cfg.probe_windows, need)
  return NetworkData(server_tokens_MxT=jnp.asarray(tok),
                     server_lengths_M=jnp.asarray(np.asarray(shards.server_lengths_K)[rows]),
                     eval_tokens_VxT=jnp.asarray(eval_VxT),
                     eval_lengths_V=jnp.asarray(shards.eval_lengths_V),
                     probe_VxPxL1=jnp.asarray(probe),
                     test_windows_WxL1=jnp.asarray(
                         evaluation.test_windows(shards.test_tokens_T, cfg.seq_len)))


def ngram_baseline(cfg: NetworkConfig) -> dict:
  """The byte n-gram yardstick of a network (`evaluation.ngram_baseline`), with `test_tokens`."""
  shards = _shards(cfg)
  rows = [np.asarray(shards.server_tokens_KxT[k, :int(shards.server_lengths_K[k])])
          for k in range(cfg.num_servers)]
  windows = evaluation.test_windows(shards.test_tokens_T, cfg.seq_len)
  out = evaluation.ngram_baseline(rows, windows, cfg.ngram_order)
  return {**out, "test_tokens": int(windows.shape[0] * cfg.seq_len)}


def _init_models(cfg: NetworkConfig, key: jax.Array, index_M: jax.Array):
  """Models and optimizer states for the given model indices; keys depend on the index only."""
  model = transformer.TransformerLM.from_config(cfg.model)
  dummy = jnp.zeros((1, cfg.seq_len), jnp.int32)
  params = jax.vmap(lambda i: model.init(jax.random.fold_in(key, i), dummy)["params"])(index_M)
  return params, train.init_opt_state(params, cfg.train)


def _outer(cfg: NetworkConfig):
  return exchange.outer_optimizer(cfg.exchange, cfg.outer_lr, cfg.outer_momentum)


def init_state(cfg: NetworkConfig, num_devices: int = 1) -> NetworkState:
  """The network at block 0: validators staked, servers unstaked, fresh models.

  A twin starts from its slot's init (same key) with its slot's learning-rate scale; in the
  syncing exchanges every server starts from the network model (server 0's init).
  """
  ledger.require_x64()
  V, K, N = cfg.num_validators, cfg.num_servers, cfg.num_uids
  slots_M = model_slots(cfg, num_devices)
  M = len(slots_M)
  key = jax.random.key(cfg.seed)
  stake_tao = cfg.validator_stake_tao_V()
  stake = np.concatenate([np.round(stake_tao * RAO), np.zeros(K)])
  hyper = ledger.Hyper.create(
      tempo=cfg.tempo, kappa=cfg.u16("kappa"), bonds_penalty=cfg.u16("bonds_penalty"),
      bonds_moving_average=cfg.bonds_moving_average, yuma3_enabled=cfg.yuma3,
      liquid_alpha_enabled=cfg.liquid_alpha, alpha_low=cfg.u16("alpha_low"),
      alpha_high=cfg.u16("alpha_high"), immunity_period=cfg.immunity_period,
      min_non_immune_uids=cfg.min_non_immune_uids,
      max_allowed_validators=cfg.max_allowed_validators,
      min_allowed_weights=cfg.min_allowed_weights,
      max_weights_limit=int(round(cfg.max_weight_limit * ledger.U16_MAX)))
  # only the V validators set weights: V weight/bond rows (docs/chain.md §1.16)
  subnet = ledger.subnet_from_neurons(stake, np.zeros(N, int), np.zeros(N, int),
                                      np.arange(N) < V, hyper=hyper, rows=V)
  subnet = subnet.replace(total_issuance=jnp.asarray(int(stake.sum()), jnp.int64))
  syncing = cfg.exchange in exchange.SYNCING
  init_index = np.zeros(M, np.int64) if syncing else slots_M
  params, opt_state = _init_models(cfg, jax.random.fold_in(key, 1), jnp.asarray(init_index))
  global_params = jax.tree.map(lambda p: p[0], params)
  rng = np.random.default_rng(cfg.seed)
  lr_scale_K = np.exp(rng.uniform(-np.log(cfg.lr_spread), 0, K)).astype(np.float32)
  behaviour = cfg.server_behaviours()
  honest = np.nonzero(behaviour == HONEST)[0]
  copy_target = np.where(behaviour == COPIER, honest[np.arange(K) % len(honest)], np.arange(K))
  P = cfg.probe_windows * cfg.seq_len
  return NetworkState(
      subnet=subnet, params=params, opt_state=opt_state,
      scores_VxK=jnp.zeros((V, K), jnp.float32),
      mix_VxK=jnp.full((V, K), 1.0 / K, jnp.float32), behaviour_K=jnp.asarray(behaviour),
      copy_target_K=jnp.asarray(copy_target, jnp.int32),
      lr_scale_M=jnp.asarray(lr_scale_K[slots_M]),
      key=key, retired_stake=jnp.asarray(0.0, jnp.float64),
      deregistered_5=jnp.zeros((5,), jnp.int32), registrations=jnp.asarray(0, jnp.int32),
      global_params=global_params, outer_state=_outer(cfg).init(global_params),
      probe_VxHxKxP=jnp.full((V, cfg.copy_window, K, P), jnp.nan, jnp.float32),
      caught_VxK=jnp.full((V, K), NEVER, jnp.int32),
      test=evaluation.empty_result(M), test_block=jnp.asarray(-1, jnp.int32),
      econ=_new_economy(cfg))


def _new_economy(cfg: NetworkConfig):
  """The economy of `cfg.economy` at genesis (None for "none"), every leaf its own buffer (the
  run donates the state, and `economy.create` may share one array between fields)."""
  if cfg.economy == "none":
    return None
  econ = economy.create(economy_config(cfg), capacity=cfg.economy_subnets,
                        in_use=cfg.economy_subnets)
  return jax.tree.map(lambda x: jnp.array(x, copy=True), econ)


def _where_tree(pred, a, b):
  return jax.tree.map(lambda x, y: jnp.where(pred, x, y), a, b)


def _bcast(m, x):
  return m.reshape(m.shape + (1,) * (x.ndim - m.ndim))


def register_newcomer(sub: ledger.Subnet, num_validators: int, deregister_validators: bool
                      ) -> tuple[ledger.Subnet, jax.Array, jax.Array]:
  """Registers a zero-stake newcomer (docs/chain.md §5), sparing validators unless asked.

  With `deregister_validators` this is the chain's `register`. Without it, the pruning rule
  (docs/chain.md §5.2) runs over the server uids only (MinNonImmuneUids then counts servers), so server
  churn never takes a validator's slot; a subnet with free slots still appends.

  Args:
    sub: the subnet.
    num_validators: V; uids 0..V-1 are validators.
    deregister_validators: whether a validator may be pruned.

  Returns:
    (subnet, uid, replaced) as `registration.register` returns them (uid -1: none available).
  """
  if deregister_validators:
    return registration.register(sub, jnp.float64(0.0))
  N = sub.in_use_N.shape[-1]
  full = sub.in_use_N.all()
  servers_only = sub.replace(in_use_N=sub.in_use_N & (jnp.arange(N) >= num_validators))
  uid = jnp.where(full, registration.neuron_to_prune(servers_only), sub.in_use_N.sum())
  new = registration.clear_uid(sub, uid, jnp.float64(0.0))
  new = jax.tree.map(lambda a, b: jnp.where(uid != registration.NO_UID, a, b), new, sub)
  return new, uid, full & (uid != registration.NO_UID)


# ---- the phases of one block ----------------------------------------------------------------

def _answering(behaviour_K):
  """Behaviour codes as answers are produced: a copier answers with its (copied) model."""
  return jnp.where(behaviour_K == COPIER, HONEST, behaviour_K)


# Models per vmapped group where every stacked model runs (training, the servers' answers): on
# CPU the pass over M models runs as a `lax.map` over groups of this many, so each op's working
# set is that of a group (in cache) whatever M is; one vmap over all M made 64 uids cost 18x
# 8 uids in these phases for 10x the arithmetic (benchmarks/RESULTS.md). 0: one vmap.
MODEL_GROUP = 4


def _model_group() -> int:
  """MODEL_GROUP on CPU; 0 (one vmap over every model) on accelerators, which want the batch."""
  return MODEL_GROUP if jax.default_backend() == "cpu" else 0


def _over_models(fn, xs):
  """`jax.vmap(fn)(xs)` over the leading model axis of `xs`, `_model_group()` models at a time
  (`lax.map(batch_size=)`): the same values per model, a smaller working set per op."""
  group, n = _model_group(), jax.tree.leaves(xs)[0].shape[0]
  if group <= 0 or n <= group:
    return jax.vmap(fn)(xs)
  return jax.lax.map(fn, xs, batch_size=group)


def _noise_slots(cfg: NetworkConfig) -> tuple[int, ...]:
  """The server slots that can hold a NOISE server (a slot only ever turns honest)."""
  return tuple(int(k) for k in np.flatnonzero(cfg.server_behaviours() == NOISE))


def _network_mix(sub: ledger.Subnet, mix_VxK: jax.Array, V: int) -> jax.Array:
  """The network's ensemble weights: the validators' mixtures weighted by their stake."""
  mix_K = (sub.stake_N[:V, None].astype(jnp.float32) * mix_VxK).sum(0)
  return jnp.where(mix_K.sum() > 0, mix_K, 1.0)


def exchange_phase(cfg: NetworkConfig, state: NetworkState, block: jax.Array) -> NetworkState:
  """"average" / "diloco": every `sync_every` blocks the network model takes one outer step on
  the servers' models (weighted by incentive or stake) and every non-copier server continues
  from it. Twins and copiers never take part; other modes return `state` unchanged."""
  if cfg.exchange not in exchange.SYNCING:
    return state
  V, K = cfg.num_validators, cfg.num_servers

  def sync(st):
    sub = st.subnet
    amount_K = (sub.incentive_N if cfg.average_by == "incentive" else sub.stake_N)[V:]
    takes_part_K = st.behaviour_K != COPIER
    w_K = exchange.contribution_weights(amount_K, takes_part_K)
    servers = jax.tree.map(lambda p: p[:K], st.params)
    glob, outer = exchange.sync(_outer(cfg), st.global_params, st.outer_state, servers, w_K)
    is_server_M = jnp.arange(st.lr_scale_M.shape[0]) < K
    reset_M = is_server_M.at[:K].set(takes_part_K)
    params = jax.tree.map(lambda p, g: jnp.where(_bcast(reset_M, p), g[None], p),
                          st.params, glob)
    return params, glob, outer

  # not due: nothing is computed (a `cond` outside any vmap runs one branch)
  params, glob, outer = jax.lax.cond(
      block % cfg.sync_every == 0, sync,
      lambda st: (st.params, st.global_params, st.outer_state), state)
  return state.replace(params=params, global_params=glob, outer_state=outer)


def train_phase(cfg: NetworkConfig, state: NetworkState, data_: NetworkData, key: jax.Array,
                block: jax.Array):
  """Every model takes `local_steps` optimizer steps on its shard; servers distil from the
  network ensemble in exchange "distill" (twins never do); copiers do not train and every
  `copy_lag` blocks take a copy of their target's model.

  Returns:
    (params, opt_state, train_loss_M).
  """
  K = cfg.num_servers
  M = state.lr_scale_M.shape[0]
  k_train, k_noise = jax.random.split(key)
  mcfg = cfg.model
  server_b = _answering(state.behaviour_K)
  distill = cfg.exchange == "distill"

  def ensemble_teacher(inputs_BxL):
    logits = transformer.apply_all(jax.tree.map(lambda p: p[:K], state.params), inputs_BxL, mcfg)
    lp, ans = scoring.answer_logprobs(logits, server_b, k_noise)
    mix = _network_mix(state.subnet, state.mix_VxK, cfg.num_validators)
    return jax.lax.stop_gradient(scoring.ensemble_logprobs(lp, mix, ans))

  train_one = functools.partial(
      train.local_train, steps=cfg.local_steps, batch=cfg.batch, seq_len=cfg.seq_len,
      teacher_fn=ensemble_teacher if distill else None, model_cfg=mcfg, train_cfg=cfg.train)
  # a twin draws its slot's batches (same key): with no exchange it is its server, bit for bit
  slots_M = jnp.asarray(model_slots(cfg, 1)[:K + len(evaluation.twin_slots(
      cfg.twins, cfg.server_behaviours()))])
  slots_M = jnp.concatenate([slots_M, jnp.arange(slots_M.shape[0], M)])
  keys_M = jax.vmap(lambda m: jax.random.fold_in(k_train, m))(slots_M)
  distill_M = jnp.where(jnp.arange(M) < K, cfg.distill_weight if distill else 0.0,
                        0.0).astype(jnp.float32)
  if cfg.local_steps > 0:
    params, opt_state, tm = _over_models(
        lambda a: train_one(*a[:5], lr_scale=a[5], distill_weight=a[6]),
        (state.params, state.opt_state, data_.server_tokens_MxT, data_.server_lengths_M,
         keys_M, state.lr_scale_M, distill_M))
    train_loss_M = tm["ce"].mean(-1)
  else:
    params, opt_state, train_loss_M = state.params, state.opt_state, jnp.zeros((M,))
  # Copiers keep their model (a copier's slot only ever turns honest, so the slots that can
  # hold one are the config's): only those rows are selected and, every `copy_lag` blocks,
  # replaced by a copy of their target's model.
  c = np.flatnonzero(cfg.server_behaviours() == COPIER)
  if len(c):
    copier_C = state.behaviour_K[c] == COPIER
    params = jax.tree.map(
        lambda new, old: new.at[c].set(jnp.where(_bcast(copier_C, new[c]), old[c], new[c])),
        params, state.params)
    src_C = jnp.where(copier_C, state.copy_target_K[c], jnp.asarray(c))
    params = jax.lax.cond(block % cfg.copy_lag == 0,
                          lambda p: jax.tree.map(lambda x: x.at[c].set(x[src_C]), p),
                          lambda p: p, params)
  return params, opt_state, train_loss_M


@flax.struct.dataclass
class Query:
  """What the validators asked and received in one block (`query_phase`)."""
  tokens_VxBxL1: jax.Array     # i32 the query windows
  tlp_VxKxBxL: jax.Array       # f32 log-prob of each target byte in each sanitised answer
  answered_VxK: jax.Array      # bool answered, queried and not caught copying
  queried_VxK: jax.Array       # bool
  probe_VxKxP: jax.Array       # f32 target log-probs on the fixed probe (NaN: no answer)
  caught_VxK: jax.Array        # i32 the last block each validator caught each server copying
  copying_VxK: jax.Array       # bool caught within the last `copy_window` blocks
  network_loss_V: jax.Array    # f32 the network model's loss on the query (NaN: no model)


def query_phase(cfg: NetworkConfig, state: NetworkState, data_: NetworkData, key: jax.Array,
                block: jax.Array) -> Query:
  """Every validator queries every server (or `query_k` of them) with windows of its held-out
  text plus its fixed probe, and checks the probe answers for lagging copies
  (`scoring.lagging_copies`): a server caught within the last `copy_window` blocks counts as
  not answering. `state.params` are the models after this block's training."""
  V, K = cfg.num_validators, cfg.num_servers
  k_query, k_noise, k_subset = jax.random.split(key, 3)
  mcfg = cfg.model
  tokens_VxBxL1 = jax.vmap(functools.partial(data.sample_windows, batch=cfg.query_batch,
                                             seq_len=cfg.seq_len))(
      data_.eval_tokens_VxT, data_.eval_lengths_V, jax.random.split(k_query, V))
  asked_VxB2xL1 = jnp.concatenate([tokens_VxBxL1, data_.probe_VxPxL1], axis=1)
  B2, L = asked_VxB2xL1.shape[1], cfg.seq_len
  server_params = jax.tree.map(lambda p: p[:K], state.params)
  # every server answers all validators' windows in one batch; each answer is reduced at once
  # to what scoring reads (target log-probs, answered), never kept as K x B x L x X log-probs,
  # a group of servers at a time (`_over_models`)
  model = transformer.TransformerLM.from_config(mcfg)
  inputs_VB2xL, targets_VxB2xL = asked_VxB2xL1[..., :-1].reshape(V * B2, L), asked_VxB2xL1[..., 1:]

  def answer(params):
    logits_VxB2xLxX = model.apply({"params": params}, inputs_VB2xL).astype(jnp.float32).reshape(
        V, B2, L, -1)
    shifted, log_sum, sane, _ = jax.vmap(lambda lg, t: scoring.reduce_answer(lg[None], t))(
        logits_VxB2xLxX, targets_VxB2xL)
    return shifted[:, 0], log_sum[:, 0], sane[:, 0]

  shifted_KxVxB2xL, log_sum_KxVxB2xL, sane_KxV = _over_models(answer, server_params)
  reduce = functools.partial(scoring.reduced_target_logprobs, noise_slots=_noise_slots(cfg),
                             vocab=mcfg.vocab)
  tlp_VxKxB2xL, answered_VxK = jax.vmap(reduce, in_axes=(1, 1, 1, 0, None, 0))(
      shifted_KxVxB2xL, log_sum_KxVxB2xL, sane_KxV, targets_VxB2xL, _answering(state.behaviour_K),
      jax.random.split(k_noise, V))
  B = cfg.query_batch
  probe_VxKxP = tlp_VxKxB2xL[:, :, B:].reshape(V, K, -1)
  probe_VxKxP = jnp.where(answered_VxK[..., None], probe_VxKxP, jnp.nan)
  caught_now = jax.vmap(functools.partial(scoring.lagging_copies, tol=cfg.copy_tolerance))(
      probe_VxKxP, state.probe_VxHxKxP, answered_VxK)
  caught_VxK = jnp.where(caught_now, block, state.caught_VxK).astype(jnp.int32)
  copying_VxK = block - caught_VxK < cfg.copy_window
  if cfg.query_k:
    queried_VxK = jax.vmap(lambda k: scoring.sample_subset(k, K, cfg.query_k))(
        jax.random.split(k_subset, V))
  else:
    queried_VxK = jnp.ones((V, K), bool)
  if cfg.exchange in exchange.SYNCING:
    network_loss_V = jax.vmap(lambda t: train.eval_loss(state.global_params, t, model_cfg=mcfg))(
        tokens_VxBxL1)
  else:
    network_loss_V = jnp.full((V,), jnp.nan, jnp.float32)
  return Query(tokens_VxBxL1=tokens_VxBxL1, tlp_VxKxBxL=tlp_VxKxB2xL[:, :, :B],
               answered_VxK=answered_VxK & queried_VxK & ~copying_VxK, queried_VxK=queried_VxK,
               probe_VxKxP=probe_VxKxP, caught_VxK=caught_VxK, copying_VxK=copying_VxK,
               network_loss_V=network_loss_V)


def score_phase(cfg: NetworkConfig, state: NetworkState, q: Query, key: jax.Array
                ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Each validator values the answers with `network.scoring`, refits its ensemble (EM) and
  updates its moving averages.

  Returns:
    (scores_VxK, mix_VxK, loss_VxK): the new moving-average scores and mixtures, and this
    query's loss of every server (the penalty where it did not count as answering).
  """
  V, K = cfg.num_validators, cfg.num_servers
  tlp, answered = q.tlp_VxKxBxL, q.answered_VxK
  loss_VxK = jax.vmap(scoring.loss_scores_tlp)(tlp, answered)
  mix_VxK = jax.vmap(lambda t, a, w: scoring.fit_mixture_tlp(t, a, w, cfg.mix_em_steps))(
      tlp, answered, state.mix_VxK)
  mix_VxK = cfg.score_decay * state.mix_VxK + (1 - cfg.score_decay) * mix_VxK
  if cfg.scoring in ("loo", "value"):
    new_VxK = jax.vmap(scoring.leave_one_out_value_tlp)(tlp, state.mix_VxK, answered)
  elif cfg.scoring == "shapley":
    perms_VxPxK = jax.vmap(lambda k: scoring.sample_permutations(
        k, K, cfg.shapley_permutations))(jax.random.split(key, V))
    new_VxK = jax.vmap(scoring.shapley_value_tlp)(tlp, state.mix_VxK, answered, perms_VxPxK)
  elif cfg.scoring == "delta":
    new_VxK = jax.vmap(scoring.delta_value)(q.network_loss_V, loss_VxK, answered)
  else:
    new_VxK = loss_VxK
  first = state.subnet.block == 0
  scores_VxK = jnp.where(first, new_VxK,
                         jax.vmap(lambda e, n, s: scoring.update_scores(e, n, s, cfg.score_decay))(
                             state.scores_VxK, new_VxK, q.queried_VxK))
  # a caught copier's credit is gone at once, not decayed away
  no_credit = scoring.PENALTY if cfg.scoring == "loss" else 0.0
  scores_VxK = jnp.where(q.copying_VxK, no_credit, scores_VxK)
  return scores_VxK, mix_VxK, loss_VxK


def weights_phase(cfg: NetworkConfig, sub: ledger.Subnet, scores_VxK: jax.Array,
                  block: jax.Array) -> tuple[ledger.Subnet, jax.Array]:
  """Every `weights_rate` blocks the validators set weights: honest ones from their scores,
  lazy ones copy the last consensus, a cabal weights its own servers; SDK-side processing, then
  the chain's checks (`chain.set_weights_rows`). Returns (subnet, rejection codes i32[N])."""
  V, K, N = cfg.num_validators, cfg.num_servers, cfg.num_uids
  vb = jnp.asarray(cfg.validator_behaviours())
  mode = "loss" if cfg.scoring == "loss" else "value"
  honest_w = jax.vmap(lambda s: scoring.scores_to_weights(s, mode, temperature=cfg.temperature))(
      scores_VxK)
  consensus_K = sub.consensus_N[V:].astype(jnp.float32)
  lazy_w = jnp.where(consensus_K.sum() > 0, consensus_K / jnp.maximum(consensus_K.sum(), 1e-30),
                     0.0)
  cabal_K = jnp.arange(K) >= K - cfg.cabal_servers
  cabal_w = cabal_K.astype(jnp.float32) / jnp.maximum(cabal_K.sum(), 1)
  w_VxK = jnp.where((vb == V_LAZY)[:, None], lazy_w[None],
                    jnp.where((vb == V_CABAL)[:, None], cabal_w[None], honest_w))
  w_VxN = jnp.zeros((V, N), jnp.float32).at[:, V:].set(w_VxK)
  processed = jax.vmap(lambda w: weights.process_weights_dense(
      w, cfg.min_allowed_weights, cfg.max_weight_limit))(w_VxN)
  processed = jnp.where(w_VxN.sum(-1, keepdims=True) > 0, processed, 0)
  values_VxN, present_VxN = jax.vmap(weights.to_u16)(processed)
  values_NxN = jnp.zeros((N, N), jnp.int32).at[:V].set(values_VxN)
  present_NxN = jnp.zeros((N, N), bool).at[:V].set(present_VxN)
  due = block % cfg.weights_rate == 0
  setter_N = (jnp.arange(N) < V) & due & present_NxN.any(-1)
  # The extrinsic lands in the block being produced (LastUpdate = block); block_step then
  # advances the ledger to that block itself, so the ledger's block is put back in between.
  sub, codes_N = chain.set_weights_rows(sub.replace(block=block), setter_N, values_NxN,
                                        present_NxN)
  return sub.replace(block=block - 1), codes_N


def economy_config(cfg: NetworkConfig) -> economy.EconomyConfig | None:
  """The EconomyConfig of `cfg.economy` (None for "none"): "root" is the root regime, any other
  rule is dtao with that share rule, "+gate" adding the Hill gate; the chain's market constants
  (docs/economy.md)."""
  if cfg.economy == "none":
    return None
  if cfg.economy == "root":
    return economy.EconomyConfig(regime="root").check()
  rule, _, gate = cfg.economy.partition("+")
  return economy.EconomyConfig(regime="dtao", share_rule=rule, gate=gate == "gate").check()


def chain_phase(cfg: NetworkConfig, sub: ledger.Subnet, econ=None):
  """The chain mints the block emission and, every tempo, runs Yuma and pays stake.

  With an economy (`network.economy`), the subnet is its netuid 0: it receives what its share of
  the block gives it (`economy.subnet_emission`: alpha after the owner cut and the root share in
  dtao, TAO in root) instead of the whole block emission, and the economy then steps one block.

  Returns:
    (subnet, epoch outputs, whether the epoch ran, economy).
  """
  dtype = jnp.dtype(cfg.epoch_dtype)
  if econ is None:
    sub, out, ran = chain.block_step(sub, variant=cfg.variant, dtype=dtype)
    return sub, out, ran, econ
  ecfg = economy_config(cfg)
  got = economy.subnet_emission(econ, ecfg, 0)
  sub, out, ran = chain.block_step(sub, variant=cfg.variant, dtype=dtype,
                                   emission=got["epoch_emission"])
  econ, _ = economy.step(econ, ecfg)
  return sub, out, ran, econ


def register_phase(cfg: NetworkConfig, state: NetworkState, key: jax.Array,
                   block: jax.Array) -> NetworkState:
  """Every `registration_interval` blocks a newcomer takes the pruned uid.

  A server newcomer is honest; its model starts from the network model in the syncing exchanges
  (a fresh init otherwise) with a fresh optimizer, and the slot's twin restarts from the same
  model. The validators' copy records of the slot are cleared, and its mixture weight and score
  start at the mean of the servers that count (`scoring.newcomer_prior`).
  """
  if cfg.registration_interval == 0:
    return state
  # not due: nothing is computed (no fresh model, no selects over every model)
  return jax.lax.cond(block % cfg.registration_interval == 0,
                      lambda st: _register(cfg, st, key, block), lambda st: st, state)


def _register(cfg: NetworkConfig, state: NetworkState, key: jax.Array,
              block: jax.Array) -> NetworkState:
  """`register_phase` in a block where a registration is due."""
  V, K = cfg.num_validators, cfg.num_servers
  sub = state.subnet
  new_sub, uid, replaced = register_newcomer(sub, V, cfg.deregister_validators)
  took = uid >= 0
  replaced = took & replaced
  old_stake = sub.stake_N[jnp.maximum(uid, 0)]
  sub = _where_tree(took, new_sub, sub)
  econ = state.econ
  if econ is not None:  # the newcomer pays netuid 0's burn (docs/economy.md: registration)
    S = econ.in_use_S.shape[0]
    econ = economy_staking.pay_burn(econ, economy_config(cfg), took & (jnp.arange(S) == 0))
  retired = state.retired_stake + jnp.where(replaced, old_stake, 0.0)
  regs = state.registrations + took.astype(jnp.int32)
  k = uid - V
  is_server = replaced & (k >= 0)
  kk = jnp.clip(k, 0, K - 1)
  kind = jnp.where(is_server, state.behaviour_K[kk], 4)
  dereg = state.deregistered_5 + jnp.where(replaced, jax.nn.one_hot(kind, 5, dtype=jnp.int32), 0)
  fresh_p, fresh_o = _init_models(cfg, jax.random.fold_in(key, block), kk[None])
  if cfg.exchange in exchange.SYNCING:
    fresh_p = jax.tree.map(lambda g: g[None], state.global_params)
  twin = jnp.asarray(twin_models(cfg))[kk]
  M = state.lr_scale_M.shape[0]
  reset_M = is_server & ((jnp.arange(M) == kk) | (jnp.arange(M) == twin))
  put = lambda a, f: jnp.where(_bcast(reset_M, a), f, a)  # noqa: E731
  params = jax.tree.map(put, state.params, fresh_p)
  opt_state = jax.tree.map(put, state.opt_state, fresh_o)
  fresh_K = is_server & (jnp.arange(K) == kk)
  behaviour_K = jnp.where(fresh_K, HONEST, state.behaviour_K)
  copy_target_K = jnp.where(fresh_K, jnp.arange(K), state.copy_target_K).astype(jnp.int32)
  mode = "loss" if cfg.scoring == "loss" else "value"
  mix_VxK = jax.vmap(lambda m: scoring.newcomer_prior(m, fresh_K, "value"))(state.mix_VxK)
  mix_VxK = mix_VxK / jnp.maximum(mix_VxK.sum(1, keepdims=True), 1e-30)
  scores_VxK = jax.vmap(lambda s: scoring.newcomer_prior(s, fresh_K, mode))(state.scores_VxK)
  return state.replace(
      subnet=sub, params=params, opt_state=opt_state, behaviour_K=behaviour_K,
      copy_target_K=copy_target_K, mix_VxK=mix_VxK, scores_VxK=scores_VxK, retired_stake=retired,
      deregistered_5=dereg, registrations=regs, econ=econ,
      probe_VxHxKxP=jnp.where(fresh_K[None, None, :, None], jnp.nan, state.probe_VxHxKxP),
      caught_VxK=jnp.where(fresh_K[None], NEVER, state.caught_VxK))


def evaluate_phase(cfg: NetworkConfig, state: NetworkState, data_: NetworkData, key: jax.Array,
                   block: jax.Array) -> NetworkState:
  """Every `eval_every` blocks: every model and the network's ensemble on the test split."""
  def run(_):
    mix_K = _network_mix(state.subnet, state.mix_VxK, cfg.num_validators)
    M = state.lr_scale_M.shape[0]
    return evaluation.evaluate(state.params, data_.test_windows_WxL1, state.behaviour_K, mix_K,
                               key, model_cfg=cfg.model, chunk=evaluation.chunk_for(M),
                               noise_slots=_noise_slots(cfg), group=_model_group())
  due = block % cfg.eval_every == 0
  test = jax.lax.cond(due, run, lambda _: state.test, None)
  test_block = jnp.where(due, block, state.test_block).astype(jnp.int32)
  return state.replace(test=test, test_block=test_block)


def network_step(cfg: NetworkConfig, state: NetworkState, data_: NetworkData,
                 key: jax.Array) -> tuple[NetworkState, dict]:
  """One block of the whole network (pure; jit it at the edge, see `Network`): the phases
  exchange, train, query, score, set weights, chain, evaluate and register, in this order."""
  block = state.subnet.block + 1  # the block being produced
  k_train, k_query, k_score, k_reg, k_eval = jax.random.split(key, 5)

  state = exchange_phase(cfg, state, block)
  params, opt_state, train_loss_M = train_phase(cfg, state, data_, k_train, block)
  state = state.replace(params=params, opt_state=opt_state)
  q = query_phase(cfg, state, data_, k_query, block)
  scores_VxK, mix_VxK, loss_VxK = score_phase(cfg, state, q, k_score)
  # not due: no weights are computed and the chain sees no extrinsic (codes 0)
  sub, codes_N = jax.lax.cond(
      block % cfg.weights_rate == 0,
      lambda s, sc: weights_phase(cfg, s, sc, block),
      lambda s, sc: (s, jnp.zeros((cfg.num_uids,), jnp.int32)), state.subnet, scores_VxK)
  sub, out, ran, econ = chain_phase(cfg, sub, state.econ)
  probe = jnp.concatenate([q.probe_VxKxP[:, None], state.probe_VxHxKxP[:, :-1]], axis=1)
  metrics = _block_metrics(cfg, state, q, loss_VxK)
  state = state.replace(subnet=sub, scores_VxK=scores_VxK, mix_VxK=mix_VxK,
                        probe_VxHxKxP=probe, caught_VxK=q.caught_VxK, econ=econ)
  state = evaluate_phase(cfg, state, data_, k_eval, block)
  state = register_phase(cfg, state, k_reg, block)
  sub = state.subnet
  metrics.update({
      "block": sub.block, "epoch_ran": ran, "total_issuance": sub.total_issuance,
      "pending_emission": sub.pending_emission, "retired_stake": state.retired_stake,
      "train_loss_M": train_loss_M, "weights_rejected_N": codes_N,
      "incentive_N": out.incentive_N, "dividends_N": out.dividends_N,
      "emission_N": out.emission_N, "stake_N": sub.stake_N,
      "copying_K": q.copying_VxK.mean(0),
  })
  return state, metrics


def _block_metrics(cfg: NetworkConfig, state: NetworkState, q: Query,
                   loss_VxK: jax.Array) -> dict:
  """What researchers want to know each block, on the validators' query text: every server's
  loss, the network ensemble's, the best honest server's, and an isolated twin's (NaN without
  twins)."""
  V = cfg.num_validators
  answered = q.answered_VxK
  quality_K = jnp.where(answered, loss_VxK, jnp.nan).mean(0)
  quality_K = jnp.where(jnp.isnan(quality_K), scoring.PENALTY, quality_K)
  mix_K = _network_mix(state.subnet, state.mix_VxK, V)
  ens_loss = jax.vmap(lambda t, a: scoring.loss_scores_tlp(
      scoring.ensemble_tlp(t, mix_K, a)[None], jnp.ones((1,), bool))[0])(
          q.tlp_VxKxBxL, answered).mean()
  honest_answering = (state.behaviour_K == HONEST) & answered.any(0)
  best_loss = jnp.where(honest_answering, quality_K, jnp.inf).min()
  twins = twin_models(cfg)
  first_twin = int(twins[twins >= 0][0]) if (twins >= 0).any() else -1
  if first_twin >= 0:
    iso_params = jax.tree.map(lambda p: p[first_twin], state.params)
    iso_loss = jax.vmap(lambda t: train.eval_loss(iso_params, t, model_cfg=cfg.model))(
        q.tokens_VxBxL1).mean()
  else:
    iso_loss = jnp.asarray(jnp.nan, jnp.float32)
  return {"ensemble_loss": ens_loss, "best_server_loss": best_loss,
          "isolated_server_loss": iso_loss, "quality_K": quality_K}


def run_blocks(cfg: NetworkConfig, state: NetworkState, data_: NetworkData,
               num_blocks: int) -> tuple[NetworkState, dict]:
  """`num_blocks` blocks in one `lax.scan`; block keys are fold_in(state.key, block)."""
  def body(s, _):
    return network_step(cfg, s, data_, jax.random.fold_in(s.key, s.subnet.block))
  return jax.lax.scan(body, state, None, length=num_blocks)


def make_mesh(devices=None) -> jax.sharding.Mesh:
  devices = np.asarray(devices if devices is not None else jax.devices())
  return jax.sharding.Mesh(devices, ("uid",))


# Leaves split over the device mesh on their leading (model) axis; everything else is replicated.
SHARDED_FIELDS = ("params", "opt_state", "lr_scale_M", "server_tokens_MxT", "server_lengths_M")


def _spec_for(path, leaf, M: int, mesh_size: int):
  top = getattr(path[0], "name", getattr(path[0], "key", None)) if path else None
  if (mesh_size > 1 and top in SHARDED_FIELDS and getattr(leaf, "ndim", 0) >= 1
      and leaf.shape[0] == M):
    return P("uid")
  return P()


class Network:
  """A network built from a config: its data, its mesh and its compiled block runner."""

  def __init__(self, cfg: NetworkConfig, mesh: jax.sharding.Mesh | None = None):
    ledger.require_x64()
    self.cfg = cfg
    self.mesh = mesh if mesh is not None else make_mesh()
    self.num_devices = self.mesh.size
    self.M = num_models(cfg, self.num_devices)
    self.data = self.shard(build_data(cfg, self.num_devices))
    self._run = None  # compiled on first use, when the state's shardings are known
    self._step = None

  def sharding(self, tree):
    """NamedShardings: the model axis M split over devices, everything else replicated."""
    return jax.tree_util.tree_map_with_path(
        lambda path, x: NamedSharding(self.mesh, _spec_for(path, x, self.M, self.mesh.size)), tree)

  def shard(self, tree):
    """Places a host-side tree on the mesh (every process passes the same values)."""
    return distributed.global_put(tree, self.sharding(tree))

  def init(self) -> NetworkState:
    return self.shard(init_state(self.cfg, self.num_devices))

  def evaluate(self, state: NetworkState) -> NetworkState:
    """The state with a fresh test-split evaluation of its models (`evaluate_phase` now)."""
    if getattr(self, "_evaluate", None) is None:
      cfg = dataclasses.replace(self.cfg, eval_every=1)
      self._evaluate = jax.jit(lambda s, d: evaluate_phase(
          cfg, s, d, jax.random.fold_in(s.key, 0x7FFFFFFF), s.subnet.block))
    return self._evaluate(state, self.data)

  def ngram_baseline(self) -> dict:
    """The n-gram yardstick on this network's test split (`network.ngram_baseline`), cached."""
    if getattr(self, "_ngram", None) is None:
      self._ngram = ngram_baseline(self.cfg)
    return self._ngram

  def step(self, state: NetworkState, key: jax.Array) -> tuple[NetworkState, dict]:
    """`network_step(state, key) -> (state, metrics)`: one block, with this network's data."""
    if self._step is None:
      self._step = jax.jit(functools.partial(network_step, self.cfg))
    return self._step(state, self.data, key)

  def run(self, state: NetworkState, num_blocks: int,
          blocks_per_call: int | None = None) -> tuple[NetworkState, dict]:
    """Runs `num_blocks` blocks; metrics are stacked over blocks (leading axis `num_blocks`).

    The blocks run as compiled calls (`run_blocks`, one `lax.scan`) of `blocks_per_call` blocks,
    `tempo` by default, and a last shorter call for the remainder: runs of any length that are
    multiples of it share one compiled program (one XLA compile, not one per length). The
    values are those of one call of `num_blocks` blocks; `state` is donated.
    """
    per = int(blocks_per_call or self.cfg.tempo)
    if per < 1:
      raise ValueError(f"blocks_per_call: must be >= 1, got {per}")
    if num_blocks < 0:
      raise ValueError(f"num_blocks: must be >= 0, got {num_blocks}")
    if self._run is None:
      # the state keeps its layout from call to call (model axis split, the rest replicated)
      self._run = jax.jit(functools.partial(run_blocks, self.cfg), static_argnums=2,
                          donate_argnums=0, out_shardings=(self.sharding(state), None))
    chunks = [per] * (num_blocks // per) + ([num_blocks % per] if num_blocks % per else [])
    parts = []
    for n in chunks or [0]:
      state, metrics = self._run(state, self.data, n)
      parts.append(metrics)
    if len(parts) == 1:
      return state, parts[0]
    return state, jax.tree.map(lambda *xs: jnp.concatenate(xs), *parts)
