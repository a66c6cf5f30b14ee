"""FaceTrack-MM composition: the face branch, the baseline, sharding, paper size."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import tiny
from facetrack_jax import sharding
from facetrack_jax.models.facetrack import FaceTrackMM, num_visual_tokens, splice
from tests.conftest import ROOT


def _cfg(**compressor):
  cfg = tiny.get_model_config()
  cfg.compressor.update(**compressor)
  return cfg


def _batch(cfg, b=2, seed=0, text_len=6):
  rng = np.random.default_rng(seed)
  t = cfg.num_frames
  n_vis = num_visual_tokens(cfg)
  text = rng.integers(7, cfg.lm.vocab_size, size=(b, 2 * text_len)).astype(np.int32)
  tokens = np.concatenate([text[:, :text_len], np.full((b, n_vis), cfg.visual_token_id, np.int32),
                           text[:, text_len:]], axis=1)
  return dict(
      frames=rng.integers(0, 256, (b, t, cfg.frame_size, cfg.frame_size, 3), dtype=np.uint8),
      faces=rng.integers(0, 256, (b, t, cfg.face_size, cfg.face_size, 3), dtype=np.uint8),
      face_mask=np.array([[True] * t, [True, False] * (t // 2)])[:b],
      tokens=tokens)


def _build(cfg, mesh=None, seed=0):
  with sharding.use_mesh(mesh):
    return nnx.jit(lambda: FaceTrackMM(cfg, rngs=nnx.Rngs(seed)))()


@nnx.jit
def _logits(model, batch):
  return model(batch["frames"], batch["faces"], batch["face_mask"], batch["tokens"])


def test_splice_places_visual_tokens_in_order_left_or_right_padded():
  text = jnp.zeros((2, 6, 1))
  vis = jnp.arange(1, 7, dtype=jnp.float32).reshape(2, 3, 1)
  is_vis = jnp.array([[0, 1, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1]], bool)
  out = splice(text, vis, is_vis)[..., 0]
  np.testing.assert_array_equal(out, [[0, 1, 2, 3, 0, 0], [0, 0, 0, 4, 5, 6]])


@pytest.mark.parametrize("face_pool", ["avg", "attn"])
def test_face_crop_matters_only_where_mask_is_true(face_pool):
  cfg = _cfg(face_pool=face_pool)
  model = _build(cfg)
  batch = _batch(cfg)
  base = _logits(model, batch)
  assert base.shape == (2, batch["tokens"].shape[1], cfg.lm.vocab_size)
  assert bool(jnp.all(jnp.isfinite(base)))

  changed = dict(batch, faces=batch["faces"].copy())
  changed["faces"][1, 0] = 255 - changed["faces"][1, 0]      # frame 0 of clip 1: mask True
  diff = np.abs(np.asarray(_logits(model, changed) - base))
  assert diff[1].max() > 1e-4, "a visible face crop must change the logits"
  assert diff[0].max() == 0.0, "clip 0 was not touched"

  hidden = dict(batch, faces=batch["faces"].copy())
  hidden["faces"][1, 1] = 255 - hidden["faces"][1, 1]        # frame 1 of clip 1: mask False
  np.testing.assert_array_equal(np.asarray(_logits(model, hidden)), np.asarray(base))


def test_global_only_baseline_ignores_faces_and_has_no_face_tower():
  cfg = _cfg(face_tokens=0)
  model = _build(cfg)
  assert model.face_vit is None and model.face_stream is None
  batch = _batch(cfg)
  assert batch["tokens"].shape[1] == 12 + cfg.num_frames * cfg.compressor.global_tokens
  other = dict(batch, faces=255 - batch["faces"])
  np.testing.assert_array_equal(np.asarray(_logits(model, other)), np.asarray(_logits(model, batch)))


def test_frame_order_matters():
  cfg = _cfg()
  model = _build(cfg)
  batch = _batch(cfg)
  rev = dict(batch, frames=batch["frames"][:, ::-1].copy(), faces=batch["faces"][:, ::-1].copy(),
             face_mask=batch["face_mask"][:, ::-1].copy())
  assert float(jnp.abs(_logits(model, rev) - _logits(model, batch)).max()) > 1e-4


def test_face_tower_heads_read_only_frames_with_a_face():
  """The face event head gives NO_FACE_LOGIT where face_mask is False and the
  face attribute head averages over the frames with a face: a hidden frame's
  crop changes neither, a visible one changes both; a clip with no face gets
  the attribute head's bias alone."""
  from facetrack_jax import face_event_supervision
  cfg = _cfg()
  cfg.face_event_head, cfg.face_attribute_head = True, True
  model = _build(cfg)
  heads = ("face_event", "face_attribute")
  read = nnx.jit(lambda m, b: m.head_logits(b["frames"], b["faces"], b["face_mask"], heads))
  batch = _batch(cfg)
  base = jax.device_get(read(model, batch))
  hidden_t = ~batch["face_mask"][1]
  np.testing.assert_array_equal(base["face_event"][1][hidden_t],
                                face_event_supervision.NO_FACE_LOGIT)
  hidden = dict(batch, faces=batch["faces"].copy())
  hidden["faces"][1, 1] = 255 - hidden["faces"][1, 1]        # mask False
  for h, z in jax.device_get(read(model, hidden)).items():
    np.testing.assert_array_equal(z, base[h])
  shown = dict(batch, faces=batch["faces"].copy())
  shown["faces"][1, 0] = 255 - shown["faces"][1, 0]          # mask True
  for h, z in jax.device_get(read(model, shown)).items():
    assert np.abs(z[1] - base[h][1]).max() > 1e-5 and np.abs(z[0] - base[h][0]).max() == 0, h
  none = dict(batch, face_mask=np.zeros_like(batch["face_mask"]))
  z = jax.device_get(read(model, none))["face_attribute"]
  np.testing.assert_allclose(z, np.broadcast_to(np.asarray(model.face_attribute_head.bias[...]),
                                                z.shape), atol=1e-6)


def test_shared_towers_build_one_vit():
  cfg = _cfg()
  cfg.shared_towers = True
  model = _build(cfg)
  assert model.face_vit is None and model.face_stream is not None
  assert bool(jnp.all(jnp.isfinite(_logits(model, _batch(cfg)))))


def _param_shardings(model):
  for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
    names = var.get_metadata().get("out_sharding")
    yield ".".join(map(str, path)), names, var[...]


@pytest.mark.parametrize("shape", [(8, 1, 1), (2, 4, 1), (2, 2, 2)])
def test_sharded_model_follows_rules_and_matches_unsharded(shape):
  cfg = _cfg(face_pool="attn")
  batch = _batch(cfg, b=8)
  batch["face_mask"] = np.tile(batch["face_mask"][1:2], (8, 1))
  reference = np.asarray(_logits(_build(cfg), batch))

  mesh = sharding.make_mesh(shape)
  model = _build(cfg, mesh)
  checked = 0
  for name, names, value in _param_shardings(model):
    assert names is not None, f"{name} was created without logical axis names"
    want = sharding.named_sharding(mesh, names)
    # Equivalence, not spec equality: an axis of size 1 may be dropped.
    assert value.sharding.is_equivalent_to(want, value.ndim), (name, value.sharding.spec, want.spec)
    checked += 1
  assert checked > 20
  with sharding.use_mesh(mesh):
    data = {k: jax.device_put(v, sharding.named_sharding(mesh, ("batch",))) for k, v in batch.items()}
    out = _logits(model, data)
  np.testing.assert_allclose(np.asarray(out), reference, atol=1e-5, rtol=0)


def test_paper_config_size_by_eval_shape():
  """SigLIP-so400m/14 (~428M) + Qwen2-7B (~7.62B) + projectors, never materialised."""
  out = subprocess.run([sys.executable, "-m", "facetrack_jax.models.summary",
                        "--config", "configs/paper.py"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300, check=True).stdout
  counts = {line.split()[0]: int(line.split()[1].replace(",", ""))
            for line in out.splitlines() if len(line.split()) == 2 and line.split()[1][0].isdigit()}
  assert abs(counts["vit"] - 428.2e6) / 428.2e6 < 0.01, counts
  assert abs(counts["lm"] - 7.6156e9) / 7.6156e9 < 0.01, counts
  projectors = counts["global_stream"] + counts["face_stream"]
  assert 0 < projectors < 0.01 * counts["total"]
  assert "face_vit" not in counts              # shared towers
  expected = 428.2e6 + 7.6156e9 + projectors
  assert abs(counts["total"] - expected) / expected < 0.01, counts
