"""Tests for bittensor_jax.history: round trips, resume, concurrent reads, crash safety."""
import numpy as np
import pytest

from bittensor_jax import history

N = 5
FIELDS = {
    "stake": ((N,), np.float64),
    "weights": ((N, N), np.int32),
    "permit": ((N,), np.bool_),
    "block": ((), np.int64),
}


def _row(epoch: int) -> dict:
  rng = np.random.default_rng(epoch)
  return {
      "stake": rng.normal(size=N) * 1e9,
      "weights": rng.integers(0, 65535, size=(N, N), dtype=np.int32),
      "permit": rng.random(N) < 0.5,
      "block": np.int64(360 * epoch),
  }


def _expected(epochs) -> dict:
  rows = [_row(e) for e in epochs]
  return {k: np.stack([np.asarray(r[k], dtype=FIELDS[k][1]) for r in rows]) for k in FIELDS}


def _assert_equal(got: dict, want: dict) -> None:
  assert set(got) == set(want)
  for k in want:
    assert got[k].dtype == want[k].dtype, k
    np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def test_round_trip(tmp_path):
  path = tmp_path / "history"
  writer = history.HistoryWriter(path, FIELDS)
  assert history.num_epochs(path) == 0
  assert history.read(path, "stake").shape == (0, N)
  for e in range(70):  # past the initial capacity, so the arrays grow
    writer.append(e, _row(e))
  assert history.num_epochs(path) == 70
  assert history.fields(path) == {k: (s, np.dtype(d).name) for k, (s, d) in FIELDS.items()}
  _assert_equal(history.read_all(path), _expected(range(70)))
  _assert_equal(history.read_all(path, 10, 20), _expected(range(10, 20)))
  np.testing.assert_array_equal(history.read(path, "block", 65, 1000), 360 * np.arange(65, 70))


def test_reopen_and_continue(tmp_path):
  path = tmp_path / "history"
  writer = history.HistoryWriter(path, FIELDS)
  for e in range(3):
    writer.append(e, _row(e))
  del writer
  writer = history.HistoryWriter(path, FIELDS)
  assert writer.num_epochs == 3
  for e in range(3, 6):
    writer.append(e, _row(e))
  _assert_equal(history.read_all(path), _expected(range(6)))


def test_reopen_with_other_fields_raises(tmp_path):
  history.HistoryWriter(tmp_path, FIELDS)
  with pytest.raises(ValueError, match="fields"):
    history.HistoryWriter(tmp_path, {"stake": ((N + 1,), np.float64)})


def test_read_while_writer_open(tmp_path):
  writer = history.HistoryWriter(tmp_path, FIELDS)
  for e in range(4):
    writer.append(e, _row(e))
    # A second writer handle on the same run, open while the first keeps writing.
    other = history.HistoryWriter(tmp_path, FIELDS)
    assert other.num_epochs == e + 1
    _assert_equal(history.read_all(tmp_path), _expected(range(e + 1)))


def test_crash_before_commit_hides_epoch(tmp_path, monkeypatch):
  writer = history.HistoryWriter(tmp_path, FIELDS)
  for e in range(3):
    writer.append(e, _row(e))

  def crash(path, count):
    raise KeyboardInterrupt(f"killed before committing {count} epochs")

  monkeypatch.setattr(history, "_write_progress", crash)
  with pytest.raises(KeyboardInterrupt):
    writer.append(3, _row(3))
  monkeypatch.undo()
  # Row 3 is on disk for every field, but it was never committed.
  assert history.num_epochs(tmp_path) == 3
  _assert_equal(history.read_all(tmp_path), _expected(range(3)))
  assert history.read(tmp_path, "stake", 0, 10).shape == (3, N)
  # The resumed run redoes epoch 3.
  writer = history.HistoryWriter(tmp_path, FIELDS)
  writer.append(3, _row(3))
  _assert_equal(history.read_all(tmp_path), _expected(range(4)))


def test_overwrite_on_resume_truncates(tmp_path):
  writer = history.HistoryWriter(tmp_path, FIELDS)
  for e in range(6):
    writer.append(e, _row(e))
  replaced = _row(100)
  writer.append(2, replaced)
  assert history.num_epochs(tmp_path) == 3
  got = history.read_all(tmp_path)
  _assert_equal({k: v[:2] for k, v in got.items()}, _expected(range(2)))
  _assert_equal({k: v[2:] for k, v in got.items()}, _expected([100]))


def test_rejects_gaps_and_bad_rows(tmp_path):
  writer = history.HistoryWriter(tmp_path, FIELDS)
  with pytest.raises(ValueError, match="gap"):
    writer.append(1, _row(1))
  with pytest.raises(ValueError, match="fields"):
    writer.append(0, {"stake": np.zeros(N)})
  with pytest.raises(ValueError, match="shape"):
    writer.append(0, {**_row(0), "stake": np.zeros(N + 1)})
  assert history.num_epochs(tmp_path) == 0


def test_metagraph_letters_str_paths_and_unknown_fields(tmp_path):
  path = tmp_path / "history"
  writer = history.HistoryWriter(path, FIELDS)
  writer.append(0, _row(0))
  np.testing.assert_array_equal(history.read(str(path), "S"), history.read(path, "stake"))
  np.testing.assert_array_equal(history.read(path, "W"), _expected([0])["weights"])
  with pytest.raises(ValueError, match=r"'I' unknown; known: \['block', 'permit', 'stake'"):
    history.read(path, "I")
  with pytest.raises(ValueError, match="not a history"):
    history.read(tmp_path, "S")
