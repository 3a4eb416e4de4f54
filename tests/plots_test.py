"""Tests for bittensor_jax.plots: PNGs from full, partial and empty inputs; Spearman with ties."""
import numpy as np
import pytest

from bittensor_jax import plots

E, N = 12, 6
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _history() -> dict:
  rng = np.random.default_rng(0)
  role = np.zeros((E, N), np.int64)
  role[:, :2] = 1
  quality = np.tile(np.linspace(2.0, 4.0, N), (E, 1))
  return {
      "stake": rng.random((E, N)) * 1e6,
      "incentive": rng.random((E, N)),
      "dividends": rng.random((E, N)),
      "emission": rng.random((E, N)),
      "role": role,
      "quality": quality,
      "server_loss": quality + rng.random((E, N)),
      "ensemble_loss": np.linspace(3.0, 1.5, E),
      "best_server_loss": np.linspace(3.5, 2.0, E),
      "registrations": rng.integers(0, 3, E),
      "deregistrations": rng.integers(0, 3, E),
      "block": 360 * np.arange(1, E + 1),
  }


def _assert_png(path) -> None:
  data = path.read_bytes()
  assert data.startswith(PNG_MAGIC) and len(data) > 10_000


def test_dashboard_full(tmp_path):
  out = plots.plot_dashboard(_history(), tmp_path / "run" / "dashboard.png", title="smoke")
  assert out == tmp_path / "run" / "dashboard.png"
  _assert_png(out)


@pytest.mark.parametrize("keep", [
    (),
    ("stake",),
    ("stake", "roles", "incentive", "quality"),
    ("ensemble_loss", "registrations"),
    ("dividends", "server_loss", "deregistrations", "block"),
])
def test_dashboard_partial(tmp_path, keep):
  history = {k: v for k, v in _history().items() if k in keep}
  if "roles" in keep:
    history["roles"] = np.array([1, 1, 0, 0, 0, 0])
  _assert_png(plots.plot_dashboard(history, tmp_path / "d.png"))


def _replay_rows(num_epochs: int = 4, n: int = 3) -> list[dict]:
  rng = np.random.default_rng(1)
  return [{
      "block": 100 * (e + 1),
      "incentive": rng.random(n).tolist(),
      "dividends": rng.random(n).tolist(),
      "consensus": rng.random(n).tolist(),
      "emission": rng.random(n).tolist(),
      "bonds": rng.random((n, n)).tolist(),
  } for e in range(num_epochs)]


def test_scenario(tmp_path):
  _assert_png(plots.plot_scenario(_replay_rows(), tmp_path / "scenario.png"))


def test_scenario_partial(tmp_path):
  rows = [{k: v for k, v in r.items() if k in ("incentive", "bonds")} for r in _replay_rows()]
  _assert_png(plots.plot_scenario(rows, tmp_path / "a.png"))
  _assert_png(plots.plot_scenario([], tmp_path / "b.png"))


def _spearman_by_definition(x, y) -> float:
  """Ranks by counting (average rank for ties), then Pearson correlation of the ranks."""
  def ranks(v):
    return [sum(w < a for w in v) + (sum(w == a for w in v) + 1) / 2 for a in v]
  rx, ry = np.array(ranks(x)), np.array(ranks(y))
  return float(np.corrcoef(rx, ry)[0, 1])


def test_rank_ties():
  np.testing.assert_array_equal(plots.rank([10, 20, 20, 5, 20]), [2, 4, 4, 1, 4])


def test_spearman():
  x = [1.0, 2.0, 2.0, 3.0, 4.0]
  y = [10.0, 30.0, 20.0, 20.0, 50.0]
  # Ranks x: 1, 2.5, 2.5, 4, 5; ranks y: 1, 4, 2.5, 2.5, 5; both centred sums of squares are
  # 9.5 and the cross sum is 4 - 0.5 + 0.25 - 0.5 + 4 = 7.25, so rho = 7.25 / 9.5 = 29 / 38.
  want = _spearman_by_definition(x, y)
  assert want == pytest.approx(29 / 38)
  assert plots.spearman(x, y) == pytest.approx(want, abs=1e-12)
  assert plots.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
  assert plots.spearman([1, 2, np.nan, 3], [1, 4, 0, 9]) == pytest.approx(1.0)
  assert np.isnan(plots.spearman([1, 1, 1], [1, 2, 3]))


def test_lines_are_labelled_by_what_holds_the_uid():
  h = _history()
  h["behaviour"] = np.tile([0, 1, 2, 3], (E, 1))
  h["validator_behaviour"] = ["honest", "cabal"]
  assert plots.behaviour_names(h) == ["honest", "cabal", "honest", "noise", "offline", "copier"]
  del h["validator_behaviour"]
  assert plots.behaviour_names(h)[:2] == ["validator", "validator"]
