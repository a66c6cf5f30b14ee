"""Augmentation and the grain pipeline: shapes, alignment, determinism,
checkpoint resume, per-host sharding, global arrays."""

import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest

import grain
import jax

from configs import tiny
from facetrack_jax import augment, checkpoint, events, input_pipeline, sharding
from facetrack_jax import tokenizer as tok_lib
from facetrack_jax.models.facetrack import num_visual_tokens

N = 40          # clips in the fake source
B = 4           # global batch
L = 256         # data.max_len (prompt ≤ 173 + caption ≤ 74 + eos)


def _caption(i):
  side = "left" if i % 2 else "right"
  return (f"Clip {i}: a man with short hair.\nAt the beginning of the video, he "
          f"turns his head to the {side}. Towards the end of the video, he smiles.")


class FakeClips:
  """Random-access source shaped like the TFDS dataset (texts as bytes).
  The index is also written into face_mask as 8 bits: a batch's fields must
  come from the same clip as its id."""

  def __init__(self, n=N, t=8, h=64, s=32):
    self.n, self.t, self.h, self.s = n, t, h, s

  def __len__(self):
    return self.n

  def __getitem__(self, i):
    rng = np.random.default_rng(i)
    bits = np.array([(i >> k) & 1 for k in range(self.t)], bool)
    return dict(
        frames=rng.integers(0, 256, (self.t, self.h, self.h, 3), np.uint8),
        faces=rng.integers(0, 256, (self.t, self.s, self.s, 3), np.uint8),
        face_mask=bits, face_boxes=np.tile(np.float32([0.1, 0.2, 0.4, 0.6]), (self.t, 1)),
        caption=_caption(i).encode(), id=f"clip-{i}".encode(),
        video=f"synthetic/{i}.mp4".encode(), source=b"synthetic")

  def __repr__(self):
    return f"FakeClips(n={self.n})"


def _index(face_mask_bt):
  return (face_mask_bt.astype(int) << np.arange(face_mask_bt.shape[-1])).sum(-1)


@pytest.fixture(scope="module")
def tok():
  return tok_lib.train_tokenizer([_caption(i) for i in range(N)] * 3, vocab_size=340)


def _config(**data):
  config = tiny.get_config()
  config.data = ml_collections.ConfigDict(dict(
      name="facetrack_synthetic", data_dir=None, tokenizer=None, max_len=L, batch_size=B,
      shuffle_seed=0, num_threads=2, prefetch=4, worker_count=0, flip_prob=0.5,
      color_jitter=0.1, crop_scale=0.9, paraphrase_instructions=True))
  config.data.update(data)
  return config


def _train_it(tok, config=None, **kw):
  return input_pipeline.make_train_iterator(config or _config(), tok, source=FakeClips(), **kw)


def _equal(a, b):
  return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


# -- augmentation -------------------------------------------------------------------
def _marked_clip():
  """Left half of every frame/face bright, right half dark; a bright box."""
  frames = np.zeros((8, 64, 64, 3), np.uint8)
  frames[:, :, :32] = 200
  faces = np.zeros((8, 32, 32, 3), np.uint8)
  faces[:, :, :16] = 200
  return dict(frames=frames, faces=faces, face_mask=np.array([1, 1, 0, 1, 1, 1, 1, 0], bool),
              face_boxes=np.tile(np.float32([0.1, 0.2, 0.3, 0.5]), (8, 1)),
              caption="He looks to the Left, then turns right; leftover words stay.", id="m")


def test_flip_swaps_sides_everywhere_and_twice_is_identity():
  ex = _marked_clip()
  f = augment.hflip(ex)
  assert f["caption"] == "He looks to the Right, then turns left; leftover words stay."
  np.testing.assert_array_equal(f["frames"], ex["frames"][:, :, ::-1])
  np.testing.assert_array_equal(f["faces"], ex["faces"][:, :, ::-1])
  assert f["frames"][0, 0, 0, 0] == 0 and f["frames"][0, 0, -1, 0] == 200
  np.testing.assert_allclose(f["face_boxes"][0], [0.7, 0.2, 0.9, 0.5], atol=1e-6)
  np.testing.assert_array_equal(f["face_boxes"][2], ex["face_boxes"][2])  # no face: kept
  ff = augment.hflip(f)
  for k in ex:  # boxes: 1 - (1 - x) is x up to float32 rounding
    if k == "face_boxes":
      np.testing.assert_allclose(ff[k], ex[k], atol=1e-6)
    else:
      np.testing.assert_array_equal(ff[k], ex[k])


def test_augment_changes_caption_only_by_the_flip():
  ex = _marked_clip()
  flips = 0
  for seed in range(40):
    out = augment.augment(ex, np.random.default_rng(seed), flip_prob=0.5)
    flipped = out["frames"][:, :, :8].mean() < out["frames"][:, :, -8:].mean()
    assert flipped == (out["faces"][:, :, :4].mean() < out["faces"][:, :, -4:].mean())
    assert out["caption"] == (events.swap_left_right(ex["caption"]) if flipped else ex["caption"])
    assert out["frames"].shape == ex["frames"].shape and out["frames"].dtype == np.uint8
    flips += flipped
  assert 5 < flips < 35
  for seed in range(20):
    out = augment.augment(ex, np.random.default_rng(seed), flip_prob=0.0)
    assert out["caption"] == ex["caption"]
    assert out["frames"][:, :, :8].mean() > out["frames"][:, :, -8:].mean()
  same = augment.augment(ex, np.random.default_rng(0), flip_prob=0.0, color_jitter=0.0,
                         crop_scale=1.0)
  for k in ex:
    np.testing.assert_array_equal(same[k], ex[k])


def test_crop_keeps_boxes_on_the_face():
  frames = np.zeros((2, 64, 64, 3), np.uint8)
  frames[:, 16:40, 20:36] = 255                       # "face" at x 20..36, y 16..40
  boxes = np.tile(np.float32([20 / 64, 16 / 64, 36 / 64, 40 / 64]), (2, 1))
  out, moved = augment.crop_resize(frames, boxes, np.ones(2, bool), x0=0.06, y0=0.03, scale=0.85)
  x0, y0, x1, y1 = np.rint(moved[0] * 64).astype(int)
  inside = out[0, y0 + 1:y1 - 1, x0 + 1:x1 - 1].mean()
  outside = out[0].sum() - out[0, max(y0 - 1, 0):y1 + 1, max(x0 - 1, 0):x1 + 1].sum()
  assert inside > 250 and outside == 0
  assert ((moved[:, 2] - moved[:, 0]) > (boxes[:, 2] - boxes[:, 0])).all()  # zoomed in


# -- training iterator -----------------------------------------------------------------
def test_batch_contract_and_alignment(tok):
  config = _config()
  batch = next(_train_it(tok, config))
  m = config.model
  want = dict(frames=((B, m.num_frames, m.frame_size, m.frame_size, 3), np.uint8),
              faces=((B, m.num_frames, m.face_size, m.face_size, 3), np.uint8),
              face_mask=((B, m.num_frames), np.bool_), tokens=((B, L), np.int32),
              targets=((B, L), np.int32), loss_mask=((B, L), np.float32))
  assert {k: (v.shape, v.dtype) for k, v in batch.items() if k != "id"} == want
  assert batch["id"].shape == (B,) and all(i.startswith("clip-") for i in batch["id"])
  np.testing.assert_array_equal(_index(batch["face_mask"]), [int(i[5:]) for i in batch["id"]])
  n_vis = num_visual_tokens(m)
  assert ((batch["tokens"] == m.visual_token_id).sum(1) == n_vis).all()
  np.testing.assert_array_equal(batch["targets"][:, :-1], batch["tokens"][:, 1:])
  for b in range(B):
    i = int(batch["id"][b][5:])
    masked = batch["targets"][b][batch["loss_mask"][b] == 1]
    assert masked[-1] == tok.eos_id
    assert tok.decode(masked) in (_caption(i), events.swap_left_right(_caption(i)))


def test_deterministic_for_a_seed(tok):
  a, b, c = _train_it(tok), _train_it(tok), _train_it(tok, _config(shuffle_seed=1))
  xs = [next(a) for _ in range(3)]
  assert all(_equal(x, next(b)) for x in xs)
  assert not _equal(xs[0], next(c))


def test_epochs_cover_every_clip_and_reshuffle(tok):
  it = _train_it(tok, _config(batch_size=8))
  epochs = [np.concatenate([next(it)["id"] for _ in range(N // 8)]) for _ in range(2)]
  assert sorted(epochs[0]) == sorted(epochs[1]) == sorted(f"clip-{i}" for i in range(N))
  assert list(epochs[0]) != list(epochs[1])


def test_iterator_state_resume(tok, tmp_path):
  it = _train_it(tok)
  for _ in range(3):
    next(it)
  state = it.get_state()
  mngr = ocp.CheckpointManager(tmp_path / "ckpt")
  mngr.save(3, args=ocp.args.Composite(data_iter=grain.checkpoint.CheckpointSave(it)))
  mngr.wait_until_finished()
  expected = [next(it) for _ in range(2)]

  fresh = _train_it(tok)
  fresh.set_state(state)
  assert all(_equal(e, next(fresh)) for e in expected)

  restored = _train_it(tok)
  mngr.restore(3, args=ocp.args.Composite(data_iter=grain.checkpoint.CheckpointRestore(restored)))
  assert all(_equal(e, next(restored)) for e in expected)
  # A checkpoint of grain's own handler (process_0-of-1.json) restores through ours.
  mngr.close()
  legacy = _train_it(tok)
  with ocp.CheckpointManager(tmp_path / "ckpt") as fresh_mngr:  # a new run
    fresh_mngr.restore(3, args=ocp.args.Composite(data_iter=checkpoint.DataIterRestore(
        legacy, sharding.DataShard(0, 1))))
  assert all(_equal(e, next(legacy)) for e in expected)


def test_iterator_state_is_per_data_shard(tok, tmp_path):
  """The position is saved per data shard, by the shard's leader only;
  restoring for another shard count stops with both counts named."""
  shard = sharding.DataShard(1, 2, True, (1,))
  it = _train_it(tok, shard=shard)
  next(it)
  mngr = ocp.CheckpointManager(tmp_path / "ckpt")
  mngr.save(1, args=ocp.args.Composite(data_iter=checkpoint.DataIterSave(it, shard)))
  mngr.save(2, args=ocp.args.Composite(data_iter=checkpoint.DataIterSave(
      it, sharding.DataShard(1, 2, False, (0, 1)))))  # a replica: writes nothing
  mngr.wait_until_finished()
  expected = next(it)
  assert sorted(p.name for p in (tmp_path / "ckpt" / "1" / "data_iter").glob("*.json")) == [
      "shard_1-of-2.json"]
  assert not list((tmp_path / "ckpt" / "2" / "data_iter").glob("*.json"))
  again = _train_it(tok, shard=shard)
  mngr.restore(1, args=ocp.args.Composite(data_iter=checkpoint.DataIterRestore(again, shard)))
  assert _equal(expected, next(again))
  with pytest.raises(checkpoint.DataShardCountError,
                     match=r"saved by 2 data shard\(s\) \(shard_1-of-2.json\); this run "
                           r"loads 3 data shard\(s\)"):
    mngr.restore(1, args=ocp.args.Composite(data_iter=checkpoint.DataIterRestore(
        _train_it(tok, _config(batch_size=6), shard=sharding.DataShard(1, 3)),
        sharding.DataShard(1, 3))))
  mngr.close()


def test_hosts_read_disjoint_clips(tok):
  seen = []
  for pi in range(2):
    it = _train_it(tok, shard=sharding.DataShard(pi, 2))
    idx = np.concatenate([next(it)["id"] for _ in range(N // B)])
    assert next(it)["tokens"].shape[0] == B // 2  # per-host batch
    assert len(set(idx)) == N // 2
    seen.append(set(idx))
  assert not seen[0] & seen[1] and seen[0] | seen[1] == {f"clip-{i}" for i in range(N)}


def test_bad_example_and_config_errors(tok):
  it = input_pipeline.make_train_iterator(_config(), tok, source=FakeClips(h=48))
  with pytest.raises(ValueError, match=r"example 'clip-\d+': field 'frames' has shape "
                                       r"\(8, 48, 48, 3\), config.model expects \(8, 64, 64, 3\)"):
    next(it)
  config = _config()
  config.model.visual_token_id = 7
  with pytest.raises(ValueError, match="visual_token_id = 7"):
    _train_it(tok, config)
  with pytest.raises(ValueError, match="not divisible by the 3 data shards"):
    _train_it(tok, shard=sharding.DataShard(0, 3))


# -- evaluation and global arrays --------------------------------------------------------
def test_eval_batches_cover_all_once_padded(tok):
  src = FakeClips(n=11)
  ids, counts = [], []
  for pi in range(2):
    shard = sharding.DataShard(pi, 2)
    batches = list(input_pipeline.make_eval_batches(_config(), tok, "test", source=src,
                                                    shard=shard))
    counts.append(len(batches))
    assert sum(int(b["valid"].sum()) for b in batches) == input_pipeline.eval_shard_size(
        len(src), shard)
    for b in batches:
      assert b["tokens"].shape == (2, L) and b["prompt"].ndim == 2
      ids += [i for i, v in zip(b["id"], b["valid"]) if v]
      assert (b["loss_mask"][~b["valid"]] == 0).all()
      for i, c, v in zip(b["id"], b["caption"], b["valid"]):
        if v:
          assert c == _caption(int(i.split("-")[1]))  # reference, never flipped
  assert counts == [3, 3]  # 6 and 5 clips, batches of 2
  assert sorted(ids) == sorted(f"clip-{i}" for i in range(11))
  shard = sharding.DataShard(0, 2)
  again = list(input_pipeline.make_eval_batches(_config(), tok, "test", source=src,
                                                shard=shard))
  assert all(_equal(x, y) for x, y in zip(
      again, input_pipeline.make_eval_batches(_config(), tok, "test", source=src,
                                              shard=shard)))


def test_to_global_shards_batch_over_data_and_fsdp(tok):
  mesh = sharding.make_mesh((4, 2, 1))
  batch = next(iter(input_pipeline.make_eval_batches(_config(batch_size=8), tok, "test",
                                                     source=FakeClips(n=8))))
  arrays = input_pipeline.to_global(batch, mesh)
  assert set(input_pipeline.to_global(next(_train_it(tok, _config(batch_size=8))), mesh)) == {
      "frames", "faces", "face_mask", "tokens", "targets", "loss_mask"}
  assert set(arrays) == set(batch) - {"id", "caption"}
  for k, x in arrays.items():
    assert x.shape == batch[k].shape and x.dtype == batch[k].dtype
    assert x.sharding.spec[0] == ("data", "fsdp")
    assert len(x.addressable_shards) == 8 and x.addressable_shards[0].data.shape[0] == 1
    np.testing.assert_array_equal(np.asarray(x), batch[k])
  with pytest.raises(ValueError, match="batch field 'frames'"):
    input_pipeline.to_global({"frames": batch["frames"][:3]}, mesh)


def test_worker_processes_match_threads_and_resume(tok):
  threads = _train_it(tok)
  expected = [next(threads) for _ in range(4)]
  workers = _train_it(tok, _config(worker_count=1))
  assert all(_equal(e, next(workers)) for e in expected[:2])
  state = workers.get_state()
  resumed = _train_it(tok, _config(worker_count=1))
  resumed.set_state(state)
  assert all(_equal(e, next(resumed)) for e in expected[2:])


# -- the real TFDS dataset ---------------------------------------------------------------
def test_tfds_source_built_by_the_builder(tok, tmp_path):
  from data_prep import builder as builder_lib  # imports TFDS: only here
  sizes = dict(num_frames=4, frame_size=32, face_size=16)
  cfg = builder_lib.make_config("synthetic", num_train=3, num_test=2, **sizes)
  builder_lib.Facetrack(config=cfg, data_dir=str(tmp_path), progress=False
                        ).download_and_prepare(file_format="array_record")
  config = _config(name=f"facetrack/{cfg.name}", data_dir=str(tmp_path), batch_size=2)
  config.model.update(sizes)
  batch = next(input_pipeline.make_train_iterator(config, tok, "train"))
  assert batch["frames"].shape == (2, 4, 32, 32, 3) and batch["faces"].shape == (2, 4, 16, 16, 3)
  masked = batch["targets"][0][batch["loss_mask"][0] == 1]
  assert masked[-1] == tok.eos_id and len(tok.decode(masked)) > 20  # a real caption
  batches = list(input_pipeline.make_eval_batches(config, tok, "test"))
  assert len(batches) == 1 and batches[0]["valid"].all() and len(set(batches[0]["id"])) == 2
  with pytest.raises(ValueError, match="cannot open TFDS dataset 'facetrack/nope'"):
    input_pipeline.make_train_iterator(_config(name="facetrack/nope", data_dir=str(tmp_path)),
                                       tok, "train")
