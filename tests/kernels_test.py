"""Every vector of kernels.json (SPEC.md section 7.1) against bittensor_jax.chain.kernels."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bittensor_jax.chain import kernels as K
from conftest import CHAIN_DATA

KERNELS = json.loads((CHAIN_DATA / "kernels.json").read_text())
TOL = 1e-9


def cases(name):
  return [pytest.param(c, id=f"{name}-{i}") for i, c in enumerate(KERNELS[name]["cases"])]


def dense(rows):
  return jnp.asarray(np.asarray(rows, dtype=np.float64).reshape(len(rows), -1))


def sparse_to_dense(rows, ncols):
  out = np.zeros((len(rows), ncols))
  pres = np.zeros((len(rows), ncols), bool)
  for i, row in enumerate(rows):
    for j, v in row:
      out[i, j], pres[i, j] = v, True
  return out, pres


@pytest.mark.parametrize("case", cases("vec_max_upscale_to_u16"))
def test_vec_max_upscale_to_u16(case):
  got = jax.jit(K.max_upscale_u16)(jnp.asarray(case["in"], jnp.float64))
  np.testing.assert_array_equal(np.asarray(got), case["out"])


@pytest.mark.parametrize("case", cases("vec_u16_max_upscale_to_u16"))
def test_vec_u16_max_upscale_to_u16(case):
  got = K.max_upscale_u16(jnp.asarray(case["in"], jnp.int32).astype(jnp.float64))
  np.testing.assert_array_equal(np.asarray(got), case["out"])


@pytest.mark.parametrize("case", cases("check_vec_max_limited"))
def test_check_vec_max_limited(case):
  got = K.check_max_limited(jnp.asarray(case["vec"], jnp.float64), jnp.asarray(case["limit"]))
  assert bool(got) == case["ok"]


@pytest.mark.parametrize("case", cases("is_topk"))
def test_is_topk(case):
  x = jnp.asarray(case["x"], jnp.float64)
  fn = K.is_topk_nonzero if case.get("nonzero") else K.is_topk
  np.testing.assert_array_equal(np.asarray(jax.jit(fn)(x, case["k"])), case["out"])


@pytest.mark.parametrize("case", cases("normalize"))
def test_normalize(case):
  np.testing.assert_allclose(K.normalize(jnp.asarray(case["in"], jnp.float64)), case["out"],
                             atol=TOL)


@pytest.mark.parametrize("case", cases("vecdiv"))
def test_vecdiv(case):
  got = K.vecdiv(jnp.asarray(case["x"], jnp.float64), jnp.asarray(case["y"], jnp.float64))
  np.testing.assert_allclose(got, case["out"], atol=TOL)


@pytest.mark.parametrize("name,fn", [("row_normalize", K.row_normalize),
                                     ("col_normalize", K.col_normalize),
                                     ("col_max_upscale", K.col_max_upscale)])
def test_matrix_normalizations(name, fn):
  for case in KERNELS[name]["cases"]:
    np.testing.assert_allclose(fn(dense(case["in"])), case["out"], atol=TOL)


def test_masks():
  (c,) = KERNELS["mask_vector"]["cases"]
  np.testing.assert_array_equal(jnp.where(jnp.asarray(c["mask"]), 0, jnp.asarray(c["x"])),
                                c["out"])
  (c,) = KERNELS["mask_rows"]["cases"]
  got = jnp.where(jnp.asarray(c["mask"])[:, None], 0, dense(c["M"]))
  np.testing.assert_array_equal(got, c["out"])
  (c,) = KERNELS["mask_diag"]["cases"]
  M = dense(c["M"])
  np.testing.assert_array_equal(jnp.where(jnp.eye(len(M), dtype=bool), 0, M), c["out"])
  for c in KERNELS["mask_diag_except_index"]["cases"]:
    M = dense(c["M"])
    eye = jnp.eye(len(M), dtype=bool)
    keep = eye & (jnp.arange(len(M)) == c["i"])[:, None]
    np.testing.assert_array_equal(jnp.where(eye & ~keep, 0, M), c["out"])


def test_col_clip():
  (c,) = KERNELS["col_clip"]["cases"]
  M = dense(c["M"])
  thr = jnp.asarray(c["threshold"], jnp.float64)
  np.testing.assert_array_equal(K.col_clip(M, thr), c["out"])
  present = M != 0  # the sparse input has its zero entry absent
  vals, pres = K.col_clip(M, thr, present)
  want, want_pres = sparse_to_dense(c["out_sparse"], M.shape[1])
  np.testing.assert_array_equal(np.asarray(pres), want_pres)
  np.testing.assert_array_equal(np.where(want_pres, vals, 0), want)


@pytest.mark.parametrize("case", cases("weighted_median"))
def test_weighted_median(case):
  minority = KERNELS["weighted_median"]["minority"]
  got = K.weighted_median(jnp.asarray(case["stake"], jnp.float64),
                          jnp.asarray(case["score"], jnp.float64), minority)
  np.testing.assert_allclose(float(got), case["out"], atol=TOL)


@pytest.mark.parametrize("case", cases("weighted_median_col"))
def test_weighted_median_col(case):
  got = jax.jit(K.weighted_median_col)(jnp.asarray(case["stake"], jnp.float64),
                                       dense(case["W"]), case["kappa"])
  np.testing.assert_allclose(got, case["out"], atol=TOL)


@pytest.mark.parametrize("case", cases("interpolate"))
def test_interpolate(case):
  got = K.interpolate(dense(case["A"]), dense(case["B"]), case["r"])
  np.testing.assert_allclose(got, case["out"], atol=case.get("tolerance", TOL))


@pytest.mark.parametrize("case", cases("interpolate_sparse"))
def test_interpolate_sparse(case):
  vals, pres = K.interpolate_sparse(dense(case["A"]), dense(case["B"]), case["r"])
  np.testing.assert_allclose(vals, case["out"], atol=case.get("tolerance", TOL))
  np.testing.assert_array_equal(np.asarray(pres), np.asarray(case["out"]) > 0)


@pytest.mark.parametrize("case", cases("mat_ema_alpha"))
def test_mat_ema_alpha(case):
  got = K.mat_ema_alpha(dense(case["new"]), dense(case["old"]), case["alpha"])
  np.testing.assert_allclose(got, case["out"], atol=TOL)


@pytest.mark.parametrize("case", cases("mat_ema_alpha_sparse"))
def test_mat_ema_alpha_sparse(case):
  new = dense(case["new"])
  got = K.mat_ema_alpha_sparse(new, new != 0, dense(case["old"]), case["alpha"])
  np.testing.assert_allclose(got, case["out"], atol=TOL)
  want, want_pres = sparse_to_dense(case["out_sparse"], new.shape[1])
  np.testing.assert_allclose(np.where(want_pres, got, 0), want, atol=TOL)
  np.testing.assert_array_equal(np.asarray(got)[~want_pres], 0)


def test_fixed_point_facts():
  facts = KERNELS["fixed_point_facts"]
  np.testing.assert_allclose(1 - 900000 / 1e6, facts["one_minus_900000_over_1e6"], atol=1e-12)
  for key, share in (("stake_share_1_rao_of_21e15_as_I32F32", 1),
                     ("stake_share_4889444_of_21e15_as_I32F32", 4889444)):
    got = K.truncate_i32f32(K.normalize(jnp.asarray([share, 21e15 - share], jnp.float64)))[0]
    np.testing.assert_allclose(float(got), facts[key], rtol=1e-9, atol=1e-20)
  sig = facts["sigmoid_safe_rho30_kappa05"]
  got = K.sigmoid_safe(jnp.asarray(sig["x"], jnp.float64), 30.0, 0.5)
  np.testing.assert_allclose(got, sig["out"], atol=sig["tolerance"])
  lo, hi = facts["exp_safe_input_clamp"]
  assert float(K.sigmoid_safe(jnp.asarray(1e6), 1.0, 0.0)) == pytest.approx(1 / (1 + np.exp(lo)))
  assert float(K.sigmoid_safe(jnp.asarray(-1e6), 1.0, 0.0)) == pytest.approx(1 / (1 + np.exp(hi)))


def test_every_kernel_is_covered():
  tested = {"vec_max_upscale_to_u16", "vec_u16_max_upscale_to_u16", "check_vec_max_limited",
            "is_topk", "normalize", "vecdiv", "row_normalize", "col_normalize", "col_max_upscale",
            "mask_vector", "mask_rows", "mask_diag", "mask_diag_except_index", "col_clip",
            "weighted_median", "weighted_median_col", "interpolate", "interpolate_sparse",
            "mat_ema_alpha", "mat_ema_alpha_sparse", "fixed_point_facts"}
  assert set(KERNELS) - {"about"} == tested


def reference_median_col(stake, W, kappa):
  """SPEC.md pitfall 11, written with numpy sort + cumsum, as the oracle for the bisection."""
  part = stake > 0
  if not part.any():
    return np.zeros(W.shape[1])
  sigma = np.where(part, stake, 0) / stake[part].sum()
  m = sigma.sum() - kappa
  out = []
  for j in range(W.shape[1]):
    col, sg = W[part, j], sigma[part]
    order = np.argsort(col, kind="stable")
    c = np.cumsum(sg[order])
    hit = np.nonzero(c > m)[0]
    out.append(col[order][hit[0] if len(hit) else len(col) - 1])
  return np.asarray(out)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("seed", range(12))
def test_weighted_median_col_matches_sort_cumsum(seed, dtype):
  rng = np.random.default_rng(seed)
  v, k = rng.integers(1, 12), rng.integers(1, 6)
  W = rng.integers(0, 5, (v, k)) / 4.0 * (rng.random((v, k)) < 0.7)  # many ties and zeros
  stake = rng.random(v) * (rng.random(v) < 0.8)
  kappa = rng.choice([32767 / 65535, 0.5, 0.3, 0.9])
  got = jax.jit(K.weighted_median_col)(jnp.asarray(stake, dtype), jnp.asarray(W, dtype),
                                       kappa)
  np.testing.assert_array_equal(np.asarray(got),
                                reference_median_col(stake.astype(dtype), W.astype(dtype),
                                                     dtype(kappa)).astype(dtype))


def test_weighted_median_col_ignores_unstaked_rows():
  """SPEC 1.7: only rows with stake > 0 take part; with none, every column gives 0, and an
  unstaked row's scores change no column."""
  W = jnp.asarray([[0.2, 0.9], [0.6, 0.1], [0.05, 0.7]])
  np.testing.assert_array_equal(K.weighted_median_col(jnp.zeros(3), W, 0.5), [0, 0])
  staked = jnp.asarray([1.0, 1.0, 0.0])
  np.testing.assert_array_equal(K.weighted_median_col(staked, W, 0.5),
                                K.weighted_median_col(staked[:2], W[:2], 0.5))


@pytest.mark.parametrize("seed", range(6))
def test_weighted_median_col_on_the_i32f32_grid_equals_the_float_search(seed):
  """float64 scores in [0, 1]: the search over I32F32 cells then float bits inside the cell
  (`unit_interval`) gives the float-bit bisection's answer and the sort-and-cumsum one, also when
  different scores share a cell (they differ by less than 2^-32 here)."""
  rng = np.random.default_rng(seed)
  v, k = 9, 7
  cell = rng.integers(0, 2**32, (v, k)) % 5 * 2**28  # few cells: many ties of cell
  W = (cell + rng.integers(0, 3, (v, k)) * rng.random((v, k))) / 2.0**32  # inside the cell
  W[rng.random((v, k)) < 0.2] = 0
  W[0, 0] = 1.0
  stake = rng.random(v) * (rng.random(v) < 0.8)
  kappa = rng.choice([32767 / 65535, 0.5, 0.3, 0.9])
  grid = jax.jit(lambda s, w: K.weighted_median_col(s, w, kappa, unit_interval=True))
  bits = jax.jit(lambda s, w: K.weighted_median_col(s, w, kappa))
  got = np.asarray(grid(jnp.asarray(stake), jnp.asarray(W)))
  np.testing.assert_array_equal(got, np.asarray(bits(jnp.asarray(stake), jnp.asarray(W))))
  np.testing.assert_array_equal(got, reference_median_col(stake, W, kappa))


ULP_ABOVE_0_3 = float(np.nextafter(0.3, 1.0))


@pytest.mark.parametrize("stake,scores", [
    # the column's smallest score holds more than m: the answer is that score, the lower end of
    # the search (a positive score, so it is not the 0 every flushed bisection point lands on)
    ([0.8, 0.2], [0.2, 0.7]),
    # an exact 50/50 split with kappa = 1/2: F(0.2) = m exactly, which is not above m, so the
    # higher weight wins (SPEC 1.7)
    ([0.5, 0.5], [0.2, 0.7]),
    # two participating scores one float apart, in one I32F32 cell; the lower one holds more than m
    ([0.6, 0.4], [0.3, ULP_ABOVE_0_3]),
    ([0.4, 0.6], [0.3, ULP_ABOVE_0_3]),
    # scores 0, 1 - 2^-33 and 1: the cells of the unit interval span 2^32 + 1 keys, so the cell
    # search needs all of its 33 halvings to tell the answer's cell 2^32 - 1 from the cell of 1
    ([0.2, 0.6, 0.2], [0.0, 1 - 2.0**-33, 1.0]),
])
@pytest.mark.parametrize("unit_interval,dtype", [(False, np.float64), (False, np.float32),
                                                 (True, np.float32),
                                                 (True, np.float64)])
def test_weighted_median_col_at_the_ends_of_the_search(stake, scores, unit_interval, dtype):
  """SPEC 1.7: the smallest score whose support exceeds m = sum(sigma) - kappa, at the edges of
  the bisection (the answer is the smallest score, a support equal to m, an answer one float from
  another score, or in the top cell below 1), against the sort-and-cumsum oracle."""
  stake = np.asarray(stake, dtype)
  W = np.asarray(scores, dtype)[:, None]
  kappa = 0.5
  got = jax.jit(lambda s, w: K.weighted_median_col(s, w, kappa, unit_interval=unit_interval))(
      jnp.asarray(stake), jnp.asarray(W))
  want = reference_median_col(stake, W, dtype(kappa)).astype(dtype)
  np.testing.assert_array_equal(np.asarray(got), want)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_weighted_median_col_of_scores_beyond_the_unit_interval(dtype):
  """SPEC 1.7 defines the median over any scores, and `weighted_median_col` without
  `unit_interval` takes any (the chain vectors only hold scores in [0, 1]): the search must not
  assume the unit interval there (its I32F32 cell search only covers keys below 2^33)."""
  stake = np.asarray([0.3, 0.3, 0.4], dtype)
  W = np.asarray([[5.0, 0.5], [100.0, 3.0], [1e6, 0.25]], dtype)
  got = jax.jit(lambda s, w: K.weighted_median_col(s, w, 0.5))(jnp.asarray(stake), jnp.asarray(W))
  np.testing.assert_array_equal(np.asarray(got),
                                reference_median_col(stake, W, dtype(0.5)).astype(dtype))
