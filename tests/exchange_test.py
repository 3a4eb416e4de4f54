"""Tests for bittensor_jax.exchange: the averaging and DiLoCo outer steps, contribution weights."""
import jax
import jax.numpy as jnp
import numpy as np

from bittensor_jax import exchange


def _servers(seed=0, K=3):
  rng = np.random.default_rng(seed)
  glob = {"a": jnp.asarray(rng.normal(size=(4, 2)), jnp.float32),
          "b": jnp.asarray(rng.normal(size=(3,)), jnp.float32)}
  servers = jax.tree.map(lambda g: g[None] + jnp.asarray(rng.normal(size=(K,) + g.shape),
                                                         jnp.float32), glob)
  return glob, servers


def test_average_is_the_weighted_mean_of_the_servers():
  glob, servers = _servers()
  w = jnp.asarray([0.5, 0.3, 0.2])
  opt = exchange.outer_optimizer("average", 0.7, 0.9)
  new, _ = exchange.sync(opt, glob, opt.init(glob), servers, w)
  for name in glob:
    want = np.tensordot(np.asarray(w), np.asarray(servers[name]), axes=1)
    np.testing.assert_allclose(np.asarray(new[name]), want, rtol=1e-5, atol=1e-6)


def test_diloco_is_nesterov_sgd_on_the_mean_pseudo_gradient():
  glob, servers = _servers(1)
  w = jnp.asarray([0.2, 0.2, 0.6])
  lr, mu = 0.7, 0.9
  opt = exchange.outer_optimizer("diloco", lr, mu)
  state = opt.init(glob)
  g1, state = exchange.sync(opt, glob, state, servers, w)
  delta = jax.tree.map(lambda g, s: np.asarray(g) - np.tensordot(np.asarray(w), np.asarray(s),
                                                                  axes=1), glob, servers)
  # Nesterov from zero momentum: trace t = g, step = -lr (g + mu t) = -lr (1 + mu) g
  for name in glob:
    np.testing.assert_allclose(np.asarray(g1[name]),
                               np.asarray(glob[name]) - lr * (1 + mu) * delta[name], rtol=1e-5,
                               atol=1e-5)
  # a second sync with the servers at the new model: the pseudo-gradient is 0, momentum moves on
  same = jax.tree.map(lambda g: jnp.broadcast_to(g, (3,) + g.shape), g1)
  g2, _ = exchange.sync(opt, g1, state, same, w)
  for name in glob:
    np.testing.assert_allclose(np.asarray(g2[name]),
                               np.asarray(g1[name]) - lr * mu * mu * delta[name], rtol=1e-5,
                               atol=1e-5)


def test_contribution_weights():
  inc = jnp.asarray([0.0, 3.0, 1.0, 4.0])
  take = jnp.asarray([True, True, True, False])
  np.testing.assert_allclose(np.asarray(exchange.contribution_weights(inc, take)),
                             [0.0, 0.75, 0.25, 0.0])
  # nobody has earned yet: uniform over those who take part
  np.testing.assert_allclose(np.asarray(exchange.contribution_weights(jnp.zeros(4), take)),
                             [1 / 3, 1 / 3, 1 / 3, 0.0], rtol=1e-6)
