"""A small decoder-only byte transformer (pre-LN, learned positions, causal attention), float32.

Models are stacked with a leading N axis: `init_stacked` vmaps `init` over keys, `apply_stacked`
runs every model on its own batch and `apply_all` runs every model on one shared query.

Dims: N models   B batch   L sequence length   D width   H heads   X vocabulary
"""
import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Hashable model hyperparameters (safe to close over or pass as a static argument)."""
  vocab: int = 256
  width: int = 64
  depth: int = 2
  heads: int = 4
  context: int = 128     # maximum sequence length (size of the positional table)
  mlp_ratio: int = 4
  tied: bool = True      # output projection = embedding transpose


class Block(nn.Module):
  """Pre-LN transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""
  width: int
  heads: int
  mlp_ratio: int

  @nn.compact
  def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
    _, seq_len, _ = x_BxLxD.shape
    head_dim = self.width // self.heads
    h_BxLxD = nn.LayerNorm(dtype=jnp.float32)(x_BxLxD)
    qkv_BxLx3xHxE = nn.DenseGeneral((3, self.heads, head_dim), dtype=jnp.float32,
                                    name="qkv")(h_BxLxD)
    q_BxLxHxE, k_BxLxHxE, v_BxLxHxE = (qkv_BxLx3xHxE[:, :, i] for i in range(3))
    scores_BxHxLxL = jnp.einsum("bqhe,bkhe->bhqk", q_BxLxHxE, k_BxLxHxE)
    scores_BxHxLxL = scores_BxHxLxL * jnp.float32(head_dim ** -0.5)
    causal_LxL = jnp.tril(jnp.ones((seq_len, seq_len), dtype=bool))
    scores_BxHxLxL = jnp.where(causal_LxL, scores_BxHxLxL, jnp.float32(-1e30))
    attn_BxHxLxL = jax.nn.softmax(scores_BxHxLxL, axis=-1)
    out_BxLxHxE = jnp.einsum("bhqk,bkhe->bqhe", attn_BxHxLxL, v_BxLxHxE)
    x_BxLxD = x_BxLxD + nn.DenseGeneral(self.width, axis=(-2, -1), dtype=jnp.float32,
                                        name="proj")(out_BxLxHxE)
    h_BxLxD = nn.LayerNorm(dtype=jnp.float32)(x_BxLxD)
    h_BxLxF = nn.gelu(nn.Dense(self.width * self.mlp_ratio, dtype=jnp.float32)(h_BxLxD))
    return x_BxLxD + nn.Dense(self.width, dtype=jnp.float32)(h_BxLxF)


class TransformerLM(nn.Module):
  """Decoder-only LM over byte tokens; returns float32 next-token logits."""
  vocab: int = 256
  width: int = 64
  depth: int = 2
  heads: int = 4
  context: int = 128
  mlp_ratio: int = 4
  tied: bool = True

  @classmethod
  def from_config(cls, cfg: ModelConfig) -> "TransformerLM":
    return cls(**dataclasses.asdict(cfg))

  @nn.compact
  def __call__(self, tokens_BxL: jax.Array) -> jax.Array:
    """Maps i32[B, L] tokens (L <= context) to f32[B, L, vocab] logits."""
    _, seq_len = tokens_BxL.shape
    embed = nn.Embed(self.vocab, self.width, dtype=jnp.float32, name="embed")
    pos_LxD = self.param("pos", nn.initializers.normal(0.02), (self.context, self.width),
                         jnp.float32)[:seq_len]
    x_BxLxD = embed(tokens_BxL.astype(jnp.int32)) + pos_LxD[None]
    for i in range(self.depth):
      x_BxLxD = Block(self.width, self.heads, self.mlp_ratio, name=f"block{i}")(x_BxLxD)
    x_BxLxD = nn.LayerNorm(dtype=jnp.float32, name="ln_f")(x_BxLxD)
    if self.tied:
      return embed.attend(x_BxLxD)
    return nn.Dense(self.vocab, dtype=jnp.float32, name="head")(x_BxLxD)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def init_stacked(key: jax.Array, num: int, cfg: ModelConfig, seq_len: int):
  """Initializes `num` independent models; every leaf gets a leading N axis (jitted).

  Args:
    key: PRNG key; split into one key per model.
    num: N.
    cfg: the shared architecture.
    seq_len: length of the dummy input used for shape inference (<= cfg.context).

  Returns:
    Params pytree with leaves f32[N, ...].
  """
  model = TransformerLM.from_config(cfg)
  dummy_1xL = jnp.zeros((1, seq_len), jnp.int32)
  return jax.vmap(lambda k: model.init(k, dummy_1xL)["params"])(jax.random.split(key, num))


def apply_stacked(params_N, tokens_NxBxL: jax.Array, cfg: ModelConfig) -> jax.Array:
  """Model n answers its own batch n: f32[N, B, L, X] logits."""
  model = TransformerLM.from_config(cfg)
  return jax.vmap(lambda p, t: model.apply({"params": p}, t))(params_N, tokens_NxBxL)


def apply_all(params_N, tokens_BxL: jax.Array, cfg: ModelConfig, group: int = 0) -> jax.Array:
  """Every model answers the same query: f32[N, B, L, X] logits.

  `group` > 0 runs the models `group` at a time (`lax.map(batch_size=group)`): the same logits,
  each op's working set that of `group` models (faster on CPU when N is large)."""
  model = TransformerLM.from_config(cfg)
  fn = lambda p: model.apply({"params": p}, tokens_BxL)  # noqa: E731
  if group <= 0 or jax.tree.leaves(params_N)[0].shape[0] <= group:
    return jax.vmap(fn)(params_N)
  return jax.lax.map(fn, params_N, batch_size=group)
