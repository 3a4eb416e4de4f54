"""Tests for bittensor_jax.data: corpus loading, private shards, window sampling."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bittensor_jax import data


@pytest.fixture(scope="module")
def docs():
  return data.load_corpus()


def _shards(docs, **kw):
  args = dict(skew=0.5, eval_fraction=0.1, seed=0, amount_spread=4.0)
  args.update(kw)
  return data.make_shards(docs, 6, 3, **args)


def test_default_corpus_is_shakespeare_without_markup(docs):
  assert len(docs) >= 30
  by_name = {d.name.split("/")[-1]: d for d in docs}
  hamlet = by_name["hamlet"]
  assert hamlet.group == "tragedies"
  assert hamlet.bytes_T.dtype == np.uint8 and not hamlet.bytes_T.flags.writeable
  text = bytes(hamlet.bytes_T).decode("utf-8")
  assert "HAMLET" in text and "To be, or not to be" in text
  assert "**" not in text and "\n#" not in text
  assert data.load_corpus()[0].bytes_T is docs[0].bytes_T  # cached


def test_data_dir_recursive_and_empty_folder(tmp_path):
  (tmp_path / "a").mkdir()
  (tmp_path / "a" / "one.txt").write_text("hello world", encoding="utf-8")
  (tmp_path / "b.md").write_text("# Title\n**BOB**  \nhi", encoding="utf-8")
  (tmp_path / "skip.bin").write_bytes(b"\x00\x01")
  got = {d.name: (d.group, bytes(d.bytes_T).decode()) for d in data.load_corpus(tmp_path)}
  assert got == {"a/one": ("a", "hello world"), "b": (tmp_path.name, "Title\nBOB\nhi")}
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(ValueError, match="no non-empty"):
    data.load_corpus(empty)


def test_shards_deterministic(docs):
  a, b, c = _shards(docs), _shards(docs), _shards(docs, seed=1)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
  assert not np.array_equal(a.server_segments_KxRx3, c.server_segments_KxRx3)


def _ranges(segs_KxRx3):
  return [[(d, s, e) for d, s, e in row if d >= 0] for row in np.asarray(segs_KxRx3)]


def _overlap(r1, r2):
  return r1[0] == r2[0] and max(r1[1], r2[1]) < min(r1[2], r2[2])


def test_shards_disjoint_and_match_segments(docs):
  shards = _shards(docs, max_server_tokens=200_000)
  server, evals = _ranges(shards.server_segments_KxRx3), _ranges(shards.eval_segments_VxRx3)
  lens = np.array([d.bytes_T.shape[0] for d in docs])
  train_end = np.floor(lens * 0.9).astype(int)
  for rows, tokens, lengths in ((server, shards.server_tokens_KxT, shards.server_lengths_K),
                                (evals, shards.eval_tokens_VxT, shards.eval_lengths_V)):
    for i, row in enumerate(rows):
      want = np.concatenate([docs[d].bytes_T[s:e] for d, s, e in row])
      assert int(lengths[i]) == want.size > 0
      np.testing.assert_array_equal(np.asarray(tokens[i, :want.size]), want)
  assert max(int(x) for x in shards.server_lengths_K) <= 200_000
  for row in server:  # training ranges stay in each document's head
    assert all(e <= train_end[d] for d, _, e in row)
  for row in evals:   # held-out ranges stay in the tail
    assert all(s >= train_end[d] for d, s, _ in row)
  flat_s = [(k, r) for k, row in enumerate(server) for r in row]
  flat_v = [(v, r) for v, row in enumerate(evals) for r in row]
  assert not any(_overlap(r1, r2) for _, r1 in flat_s for _, r2 in flat_v)
  for flat in (flat_s, flat_v):  # no two servers (validators) share a byte
    by_doc = {}
    for owner, (d, s, e) in flat:
      by_doc.setdefault(d, []).append((s, e, owner))
    for spans in by_doc.values():
      spans.sort()
      assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))


def _mean_entropy(shards, num_docs):
  hist = data.shard_doc_histogram(shards.server_segments_KxRx3, num_docs)
  p = hist / hist.sum(axis=1, keepdims=True)
  return float(np.mean(-np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0), axis=1)))


def test_non_iid_grows_as_skew_shrinks(docs):
  ent = [_mean_entropy(_shards(docs, skew=s, amount_spread=1.0), len(docs))
         for s in (0.02, 1.0, 100.0)]
  assert ent[0] < ent[1] < ent[2]
  assert ent[2] > 0.9 * np.log(len(docs))


def test_amount_spread(docs):
  flat = _shards(docs, amount_spread=1.0)
  spread = _shards(docs, amount_spread=20.0)
  np.testing.assert_array_equal(flat.server_amount_K, 1.0)
  assert np.all((spread.server_amount_K >= 1 / 20) & (spread.server_amount_K <= 1))
  assert int(np.sum(spread.server_lengths_K)) < int(np.sum(flat.server_lengths_K))


def test_sample_windows_contiguous_in_prefix_and_vmappable():
  tokens_KxT = jnp.stack([jnp.arange(100, dtype=jnp.int32), jnp.arange(100, dtype=jnp.int32)])
  lengths_K = jnp.array([40, 100], jnp.int32)
  fn = jax.jit(jax.vmap(functools.partial(data.sample_windows, batch=512, seq_len=8)))
  out = fn(tokens_KxT, lengths_K, jax.random.split(jax.random.key(0), 2))
  assert out.shape == (2, 512, 9) and out.dtype == jnp.int32
  np.testing.assert_array_equal(np.diff(np.asarray(out), axis=-1), 1)
  assert int(out[0].max()) == 39 and int(out[0].min()) == 0  # whole valid prefix, nothing past
  assert int(out[1].max()) > 60
