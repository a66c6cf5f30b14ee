"""Scanned layers (params stacked on a "layers" axis) and remat compute what the
unrolled model computes: same logits, same gradients, same generated tokens."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding

from configs import tiny
from facetrack_jax import sharding
from facetrack_jax.generate import generate
from facetrack_jax.models import layers
from facetrack_jax.models.facetrack import FaceTrackMM, num_visual_tokens


def _cfg(scan, remat="none"):
  m = tiny.get_model_config()
  m.lm.depth, m.vit.depth, m.face_vit.depth = 3, 2, 2
  m.scan_layers, m.remat = scan, remat
  return m


def _batch(m, b=2, seed=0):
  rng = np.random.default_rng(seed)
  t, n = m.num_frames, num_visual_tokens(m)
  assert m.visual_token_id < 5
  tokens = rng.integers(5, m.lm.vocab_size, (b, n + 12)).astype(np.int32)
  tokens[:, 2:2 + n] = m.visual_token_id          # exactly n placeholders per row
  return dict(frames=rng.integers(0, 256, (b, t, m.frame_size, m.frame_size, 3), np.uint8),
              faces=rng.integers(0, 256, (b, t, m.face_size, m.face_size, 3), np.uint8),
              face_mask=rng.random((b, t)) > 0.2, tokens=tokens,
              targets=np.roll(tokens, -1, axis=1))


def _models(remat="none"):
  """(unrolled model, scanned model holding the same weights), on one device."""
  with sharding.use_mesh():
    unrolled = FaceTrackMM(_cfg(False), rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(nnx.eval_shape(lambda: FaceTrackMM(_cfg(True, remat),
                                                                   rngs=nnx.Rngs(0))))
  nnx.replace_by_pure_dict(state, layers.stack_layer_params(nnx.to_pure_dict(nnx.state(unrolled))))
  return unrolled, nnx.merge(graphdef, state)


def _loss(model, batch):
  logits = model(batch["frames"], batch["faces"], batch["face_mask"], batch["tokens"])
  return jnp.mean(-jnp.take_along_axis(jax.nn.log_softmax(logits), batch["targets"][..., None],
                                       axis=-1))


@nnx.jit
def _loss_and_grads(model, batch):
  return nnx.value_and_grad(_loss)(model, batch)


def test_stacked_params_carry_the_layers_axis():
  _, scanned = _models()
  qkv = scanned.lm.blocks.attn.qkv.kernel
  assert qkv[...].shape == (3, 64, 2, 4, 16)
  assert qkv.get_metadata()["out_sharding"] == ("layers", "embed", "kv_heads", "fused", "head_dim")
  assert scanned.vit.blocks.mlp.fc1.kernel[...].shape == (2, 64, 128)
  assert layers.num_layers(scanned.lm.blocks) == 3
  assert ("layers", None) in sharding.RULES


@pytest.mark.parametrize("remat", ["none", "full", "save_dot_except_mlp"])
def test_scanned_equals_unrolled_forward_and_gradients(remat):
  unrolled, scanned = _models(remat)
  batch = jax.tree.map(jnp.asarray, _batch(_cfg(False)))
  loss_u, grads_u = _loss_and_grads(unrolled, batch)
  loss_s, grads_s = _loss_and_grads(scanned, batch)
  np.testing.assert_allclose(loss_s, loss_u, atol=1e-5, rtol=0)
  g_u = layers.stack_layer_params(nnx.to_pure_dict(nnx.state(grads_u)))
  g_s = nnx.to_pure_dict(nnx.state(grads_s))
  assert jax.tree.structure(g_u) == jax.tree.structure(g_s)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(g_u), jax.tree.leaves(g_s)):
    np.testing.assert_allclose(b, a, atol=1e-5, rtol=0, err_msg=jax.tree_util.keystr(path))
  # Gradients reach every layer of the stack (none is silently skipped).
  assert bool((jnp.abs(g_s["lm"]["blocks"]["mlp"]["down"]["kernel"]).sum(axis=(1, 2)) > 0).all())


def test_remat_policy_names_are_checked():
  with pytest.raises(ValueError, match="not a remat policy.*full"):
    FaceTrackMM(_cfg(True, "everything"), rngs=nnx.Rngs(0))


def test_scanned_generation_equals_unrolled():
  unrolled, scanned = _models()
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.normal(0, 1, (2, 9, 64)).astype(np.float32))
  mask = jnp.asarray(np.array([[True] * 9, [False] * 4 + [True] * 5]))
  with sharding.use_mesh():
    a = generate(unrolled.lm, x, mask, max_new_tokens=6, eos_id=-1)
    b = generate(scanned.lm, x, mask, max_new_tokens=6, eos_id=-1)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  cache = scanned.lm.init_cache(2, 15)
  assert cache.k.shape == (3, 2, 2, 15, 16)       # [layers, B, KVH, S, Dh]
  assert [c.shape for c in unrolled.lm.init_cache(2, 15).k] == [(2, 2, 15, 16)] * 3


def test_scanned_model_shards_on_a_mesh():
  _, scanned = _models("full")
  batch = jax.tree.map(jnp.asarray, _batch(_cfg(True), b=4))
  want_loss, _ = _loss_and_grads(scanned, batch)
  mesh = sharding.make_mesh((2, 2, 2))
  with sharding.use_mesh(mesh):
    sharded = nnx.jit(lambda: FaceTrackMM(_cfg(True, "full"), rngs=nnx.Rngs(0)))()
    kernel = sharded.lm.blocks.mlp.gate_up.kernel[...]
    assert kernel.sharding.is_equivalent_to(
        NamedSharding(mesh, sharding.logical_to_spec(("layers", "embed", "fused", "mlp"))), 4)
    nnx.update(sharded, jax.tree.map(lambda x, y: jax.device_put(x, y.sharding),
                                     nnx.state(scanned), nnx.state(sharded)))
    loss, _ = _loss_and_grads(sharded, batch)
  np.testing.assert_allclose(loss, want_loss, atol=1e-5, rtol=0)


def test_scanned_train_state_checkpoints_and_restores_on_another_mesh(tmp_path):
  from configs import tiny_synthetic
  from facetrack_jax import checkpoint, train_step
  config = tiny_synthetic.get_config()
  config.model.scan_layers, config.model.remat = True, "full"
  setup = train_step.make_setup(config, sharding.make_mesh((8, 1, 1)))
  state = train_step.init_state(config, setup)
  ckpt = checkpoint.Checkpointer(tmp_path / "ckpt", async_save=False)
  ckpt.save(0, state)
  other = train_step.make_setup(config, sharding.make_mesh((2, 2, 2)))
  restored = ckpt.restore(0, other.abstract_state)
  ckpt.close()
  kernel = restored["params"]["lm"]["blocks"]["mlp"]["gate_up"]["kernel"]
  assert kernel.shape == (2, 64, 2, 128)
  assert kernel.sharding == other.abstract_state["params"]["lm"]["blocks"]["mlp"]["gate_up"][
      "kernel"].sharding
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
