"""The federated network: servers that learn, validators that judge, one compiled step that pays.

This is where the neuron models and the chain meet; neither knows of the other. One block of
`network_step`:
  1. every server runs `local_steps` optimizer steps on its private shard (optionally distilling
     from the network ensemble on its own text); copiers refresh a lagged copy of their target;
  2. every validator queries every server (or k of them) with a batch of its held-out text,
     scores the answers (loss, or leave-one-out value to its weighted ensemble) and updates a
     moving average;
  3. every `weights_rate` blocks the validators set weights through the SDK-side processing
     (max-weight limit, u16) and the chain-side checks;
  4. the chain mints the block emission and, every `tempo` blocks, runs Yuma and pays stake;
  5. every `registration_interval` blocks a newcomer registers: the pruned uid's model and
     optimizer are re-initialized, its bonds and weights cleared as on chain. Validators are
     pruned only when `deregister_validators` is set; by default the pruning rule sees servers.

Dims: N uids (validators 0..V-1, servers V..V+K-1), V validators, K servers, M stacked models
(K servers, then one isolated baseline model, then padding to a multiple of the device count),
B query batch, L sequence length, X vocabulary.
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

from bittensor_jax import chain, data, distributed, scoring
from bittensor_jax.chain import emission, ledger, registration
from bittensor_jax import weights
from bittensor_jax.neurons import train, transformer

RAO = emission.RAO_PER_TAO
# Server behaviours (scoring codes; COPIER answers with a lagged copy of its target's model).
HONEST, NOISE, OFFLINE, COPIER = scoring.HONEST, scoring.NOISE, scoring.OFFLINE, scoring.COPIER
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
  distill_weight: float = 0.0
  copy_lag: int = 10
  # validators
  scoring: str = "value"            # "value" (leave-one-out) or "loss"
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
    check(self.scoring in ("value", "loss"), "scoring", "must be 'value' or 'loss'")
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
  params: Any                  # f32[M, ...] stacked models
  opt_state: Any               # [M, ...]
  scores_VxK: jax.Array        # f32 moving-average scores (loss or value)
  mix_VxK: jax.Array           # f32 each validator's ensemble weights over servers (EM-fitted)
  behaviour_K: jax.Array       # i32 server behaviours
  copy_target_K: jax.Array     # i32 whose model each copier copies
  lr_scale_M: jax.Array        # f32
  key: jax.Array               # typed PRNG key; per-block keys are fold_in(key, block)
  retired_stake: jax.Array     # f64 stake of deregistered neurons (kept for conservation)
  deregistered_5: jax.Array    # i32 counts: honest, noise, offline, copier servers; validators
  registrations: jax.Array     # i32


@flax.struct.dataclass
class NetworkData:
  server_tokens_MxT: jax.Array  # i32 each model's private shard (isolated model: server 0's)
  server_lengths_M: jax.Array
  eval_tokens_VxT: jax.Array    # i32 validators' held-out text
  eval_lengths_V: jax.Array


def num_models(cfg: NetworkConfig, num_devices: int = 1) -> int:
  m = cfg.num_servers + 1
  return -(-m // num_devices) * num_devices


def build_data(cfg: NetworkConfig, num_devices: int = 1) -> NetworkData:
  """Loads the corpus and deals private shards (host side, once)."""
  docs = data.load_corpus(cfg.data_dir)
  shards = data.make_shards(docs, cfg.num_servers, cfg.num_validators, skew=cfg.skew,
                            eval_fraction=cfg.eval_fraction, seed=cfg.seed,
                            amount_spread=cfg.amount_spread,
                            max_server_tokens=cfg.max_server_tokens,
                            max_eval_tokens=cfg.max_eval_tokens)
  need = cfg.seq_len + 1
  short = np.nonzero(np.asarray(shards.server_lengths_K) < need)[0]
  if len(short):
    raise ValueError(f"network.seq_len: server shards {short.tolist()} hold fewer than "
                     f"seq_len + 1 = {need} bytes; use more text or a shorter seq_len")
  M = num_models(cfg, num_devices)
  rows = np.concatenate([np.arange(cfg.num_servers), np.zeros(M - cfg.num_servers, int)])
  tok = np.asarray(shards.server_tokens_KxT).astype(np.int32)[rows]
  return NetworkData(server_tokens_MxT=jnp.asarray(tok),
                     server_lengths_M=jnp.asarray(np.asarray(shards.server_lengths_K)[rows]),
                     eval_tokens_VxT=jnp.asarray(np.asarray(shards.eval_tokens_VxT, np.int32)),
                     eval_lengths_V=jnp.asarray(shards.eval_lengths_V))


def _init_models(cfg: NetworkConfig, key: jax.Array, index_M: jax.Array):
  """Models and optimizer states for the given model indices; keys depend on the index only."""
  model = transformer.TransformerLM.from_config(cfg.model)
  dummy = jnp.zeros((1, cfg.seq_len), jnp.int32)
  params = jax.vmap(lambda i: model.init(jax.random.fold_in(key, i), dummy)["params"])(index_M)
  return params, train.init_opt_state(params, cfg.train)


def init_state(cfg: NetworkConfig, num_devices: int = 1) -> NetworkState:
  """The network at block 0: validators staked, servers unstaked, fresh models."""
  ledger.require_x64()
  V, K, N = cfg.num_validators, cfg.num_servers, cfg.num_uids
  M = num_models(cfg, num_devices)
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
  subnet = ledger.subnet_from_neurons(stake, np.zeros(N, int), np.zeros(N, int),
                                      np.arange(N) < V, hyper=hyper)
  subnet = subnet.replace(total_issuance=jnp.asarray(int(stake.sum()), jnp.int64))
  params, opt_state = _init_models(cfg, jax.random.fold_in(key, 1), jnp.arange(M))
  rng = np.random.default_rng(cfg.seed)
  lr_scale = np.exp(rng.uniform(-np.log(cfg.lr_spread), 0, M)).astype(np.float32)
  behaviour = cfg.server_behaviours()
  honest = np.nonzero(behaviour == HONEST)[0]
  copy_target = np.where(behaviour == COPIER, honest[np.arange(K) % len(honest)], np.arange(K))
  return NetworkState(
      subnet=subnet, params=params, opt_state=opt_state,
      scores_VxK=jnp.zeros((V, K), jnp.float32),
      mix_VxK=jnp.full((V, K), 1.0 / K, jnp.float32), behaviour_K=jnp.asarray(behaviour),
      copy_target_K=jnp.asarray(copy_target, jnp.int32), lr_scale_M=jnp.asarray(lr_scale),
      key=key, retired_stake=jnp.asarray(0.0, jnp.float64),
      deregistered_5=jnp.zeros((5,), jnp.int32), registrations=jnp.asarray(0, jnp.int32))


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


def network_step(cfg: NetworkConfig, state: NetworkState, data_: NetworkData,
                 key: jax.Array) -> tuple[NetworkState, dict]:
  """One block of the whole network (pure; jit it at the edge, see `Network`)."""
  V, K, N = cfg.num_validators, cfg.num_servers, cfg.num_uids
  M = state.lr_scale_M.shape[0]
  sub = state.subnet
  block = sub.block + 1  # the block being produced
  k_train, k_query, k_noise, k_subset, k_reg = jax.random.split(key, 5)
  mcfg = cfg.model

  # ---- 1. servers train locally on their private shards ------------------------------------
  incentive_K = sub.incentive_N[V:].astype(jnp.float32)
  server_b = jnp.where(state.behaviour_K == COPIER, HONEST, state.behaviour_K)

  def ensemble_teacher(inputs_BxL):
    logits = transformer.apply_all(jax.tree.map(lambda p: p[:K], state.params), inputs_BxL, mcfg)
    lp, ans = scoring.answer_logprobs(logits, server_b, k_noise)
    mix = (state.subnet.stake_N[:V, None].astype(jnp.float32) * state.mix_VxK).sum(0)
    return jax.lax.stop_gradient(scoring.ensemble_logprobs(lp, mix, ans))

  train_one = functools.partial(
      train.local_train, steps=cfg.local_steps, batch=cfg.batch, seq_len=cfg.seq_len,
      teacher_fn=ensemble_teacher if cfg.distill_weight > 0 else None,
      model_cfg=mcfg, train_cfg=cfg.train)
  keys_M = jax.vmap(lambda m: jax.random.fold_in(k_train, m))(jnp.arange(M))
  # servers distil; the isolated baseline (model K) and padding never do (weight 0)
  distill_M = jnp.where(jnp.arange(M) < K, cfg.distill_weight, 0.0).astype(jnp.float32)
  if cfg.local_steps > 0:
    params, opt_state, tm = jax.vmap(
        lambda p, o, t, n, k, s, w: train_one(p, o, t, n, k, lr_scale=s, distill_weight=w))(
            state.params, state.opt_state, data_.server_tokens_MxT, data_.server_lengths_M,
            keys_M, state.lr_scale_M, distill_M)
    train_loss_M = tm["ce"].mean(-1)
  else:
    params, opt_state, train_loss_M = state.params, state.opt_state, jnp.zeros((M,))
  # copiers do not train; every copy_lag blocks they take a copy of their target's model
  is_copier_M = jnp.zeros((M,), bool).at[:K].set(state.behaviour_K == COPIER)
  params = jax.tree.map(lambda new, old: jnp.where(_bcast(is_copier_M, new), old, new),
                        params, state.params)
  refresh = block % cfg.copy_lag == 0
  src_M = jnp.arange(M).at[:K].set(jnp.where(state.behaviour_K == COPIER, state.copy_target_K,
                                             jnp.arange(K)))
  params = jax.tree.map(lambda p: jnp.where(refresh, p[src_M], p), params)

  # ---- 2. validators query every server with their held-out text ---------------------------
  qkeys_V = jax.random.split(k_query, V)
  tokens_VxBxL1 = jax.vmap(functools.partial(data.sample_windows, batch=cfg.query_batch,
                                             seq_len=cfg.seq_len))(
      data_.eval_tokens_VxT, data_.eval_lengths_V, qkeys_V)
  inputs_VxBxL, targets_VxBxL = tokens_VxBxL1[..., :-1], tokens_VxBxL1[..., 1:]
  server_params = jax.tree.map(lambda p: p[:K], params)
  logits_VxKxBxLxX = jax.vmap(lambda t: transformer.apply_all(server_params, t, mcfg))(
      inputs_VxBxL)
  logprobs, answered_VxK = jax.vmap(lambda lg, k: scoring.answer_logprobs(lg, server_b, k))(
      logits_VxKxBxLxX, jax.random.split(k_noise, V))
  if cfg.query_k:
    queried_VxK = jax.vmap(lambda k: scoring.sample_subset(k, K, cfg.query_k))(
        jax.random.split(k_subset, V))
  else:
    queried_VxK = jnp.ones((V, K), bool)
  answered_VxK = answered_VxK & queried_VxK
  loss_VxK = jax.vmap(scoring.loss_scores)(logprobs, targets_VxBxL, answered_VxK)
  # each validator's ensemble: mixture weights fitted by EM on the answers it receives
  mix_VxK = jax.vmap(lambda lp, t, a, w: scoring.fit_mixture(lp, t, a, w, cfg.mix_em_steps))(
      logprobs, targets_VxBxL, answered_VxK, state.mix_VxK)
  mix_VxK = cfg.score_decay * state.mix_VxK + (1 - cfg.score_decay) * mix_VxK
  if cfg.scoring == "value":
    new_VxK = jax.vmap(scoring.leave_one_out_value)(logprobs, targets_VxBxL, state.mix_VxK,
                                                    answered_VxK)
  else:
    new_VxK = loss_VxK
  first = sub.block == 0
  scores_VxK = jnp.where(first, new_VxK,
                         jax.vmap(lambda e, n, q: scoring.update_scores(e, n, q, cfg.score_decay))(
                             state.scores_VxK, new_VxK, queried_VxK))

  # what researchers want to know: held-out quality and the ensemble
  quality_K = jnp.where(answered_VxK, loss_VxK, jnp.nan).mean(0)
  quality_K = jnp.where(jnp.isnan(quality_K), scoring.PENALTY, quality_K)
  # the network's ensemble: the validators' mixtures weighted by their stake
  vstake_V = sub.stake_N[:V].astype(jnp.float32)
  net_mix_K = (vstake_V[:, None] * state.mix_VxK).sum(0)
  mix_K = jnp.where(net_mix_K.sum() > 0, net_mix_K, 1.0)
  ens_loss = jax.vmap(lambda lp, t, a: scoring.loss_scores(
      scoring.ensemble_logprobs(lp, mix_K, a)[None], t, jnp.ones((1,), bool))[0])(
          logprobs, targets_VxBxL, answered_VxK).mean()
  honest_answering = (state.behaviour_K == HONEST) & answered_VxK.any(0)
  best_loss = jnp.where(honest_answering, quality_K, jnp.inf).min()
  iso_params = jax.tree.map(lambda p: p[K], params)
  iso_loss = jax.vmap(lambda t: train.eval_loss(iso_params, t, model_cfg=mcfg))(
      tokens_VxBxL1).mean()

  # ---- 3. validators set weights every weights_rate blocks --------------------------------
  vb = jnp.asarray(cfg.validator_behaviours())
  mode = "value" if cfg.scoring == "value" else "loss"
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
  # The extrinsic lands in the block being produced (LastUpdate = block); block_step below then
  # advances the ledger to that block itself, so the ledger's block is put back in between.
  sub, codes_N = chain.set_weights_rows(sub.replace(block=block), setter_N, values_NxN,
                                        present_NxN)
  sub = sub.replace(block=block - 1)

  # ---- 4. the chain: mint, epoch when due, pay ---------------------------------------------
  sub, out, ran = chain.block_step(sub, variant=cfg.variant, dtype=jnp.dtype(cfg.epoch_dtype))

  # ---- 5. registration: a newcomer replaces the pruned uid -------------------------------
  retired, dereg, regs = state.retired_stake, state.deregistered_5, state.registrations
  behaviour_K, copy_target_K = state.behaviour_K, state.copy_target_K
  if cfg.registration_interval > 0:
    reg_due = block % cfg.registration_interval == 0
    new_sub, uid, replaced = register_newcomer(sub, V, cfg.deregister_validators)
    took = reg_due & (uid >= 0)
    replaced = took & replaced
    old_stake = sub.stake_N[jnp.maximum(uid, 0)]
    sub = _where_tree(took, new_sub, sub)
    retired = retired + jnp.where(replaced, old_stake, 0.0)
    regs = regs + took.astype(jnp.int32)
    k = uid - V
    is_server = replaced & (k >= 0)
    kk = jnp.clip(k, 0, K - 1)
    kind = jnp.where(is_server, behaviour_K[kk], 4)
    dereg = dereg + jnp.where(replaced, jax.nn.one_hot(kind, 5, dtype=jnp.int32), 0)
    fresh_p, fresh_o = _init_models(cfg, jax.random.fold_in(k_reg, block), kk[None])
    put = lambda a, f: a.at[kk].set(jnp.where(is_server, f[0], a[kk]))
    params = jax.tree.map(put, params, fresh_p)
    opt_state = jax.tree.map(put, opt_state, fresh_o)
    behaviour_K = behaviour_K.at[kk].set(jnp.where(is_server, HONEST, behaviour_K[kk]))
    copy_target_K = copy_target_K.at[kk].set(
        jnp.where(is_server, kk, copy_target_K[kk]).astype(jnp.int32))
    mix_VxK = mix_VxK.at[:, kk].set(jnp.where(is_server, mix_VxK.mean(1), mix_VxK[:, kk]))
    scores_VxK = scores_VxK.at[:, kk].set(jnp.where(is_server, scores_VxK.mean(1),
                                                    scores_VxK[:, kk]))

  new_state = state.replace(subnet=sub, params=params, opt_state=opt_state,
                            scores_VxK=scores_VxK, mix_VxK=mix_VxK, behaviour_K=behaviour_K,
                            copy_target_K=copy_target_K, retired_stake=retired,
                            deregistered_5=dereg, registrations=regs)
  metrics = {
      "block": sub.block, "epoch_ran": ran, "total_issuance": sub.total_issuance,
      "pending_emission": sub.pending_emission, "retired_stake": retired,
      "ensemble_loss": ens_loss, "best_server_loss": best_loss, "isolated_server_loss": iso_loss,
      "quality_K": quality_K, "train_loss_M": train_loss_M, "weights_rejected_N": codes_N,
      "incentive_N": out.incentive_N, "dividends_N": out.dividends_N,
      "emission_N": out.emission_N, "stake_N": sub.stake_N,
  }
  return new_state, metrics


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

  def step(self, state: NetworkState, key: jax.Array) -> tuple[NetworkState, dict]:
    """`network_step(state, key) -> (state, metrics)`: one block, with this network's data."""
    if self._step is None:
      self._step = jax.jit(functools.partial(network_step, self.cfg))
    return self._step(state, self.data, key)

  def run(self, state: NetworkState, num_blocks: int) -> tuple[NetworkState, dict]:
    """Runs `num_blocks` blocks in one compiled call; metrics are stacked over blocks."""
    if self._run is None:
      # the state keeps its layout from call to call (model axis split, the rest replicated)
      self._run = jax.jit(functools.partial(run_blocks, self.cfg), static_argnums=2,
                          donate_argnums=0, out_shardings=(self.sharding(state), None))
    state, metrics = self._run(state, self.data, num_blocks)
    return state, metrics
