"""The fused attention path (jax.nn.dot_product_attention, config.model.attention)
computes what the einsum reference computes: forward and gradients, fp32, to
1e-5 — causal, key padding, left-padded prompts, GQA, the KV cache, scanned and
unrolled layers, the ViTs, and the whole train step on the (2, 2, 2) mesh."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import tiny, tiny_synthetic
from facetrack_jax import sharding, train_step
from facetrack_jax.generate import generate
from facetrack_jax.models import attention
from facetrack_jax.models.facetrack import num_visual_tokens
from facetrack_jax.models.lm import LM

TOL = 1e-5


def _lm_pair(scan: bool, remat: str = "none"):
  """(einsum LM, fused LM) with the same weights (GQA: 4 query heads, 2 kv heads)."""
  cfg = tiny.get_model_config().lm
  assert cfg.num_heads == 2 * cfg.num_kv_heads
  with sharding.use_mesh():
    ref = LM(cfg, rngs=nnx.Rngs(0), scan_layers=scan, remat=remat, attention="einsum")
    fused = LM(cfg, rngs=nnx.Rngs(0), scan_layers=scan, remat=remat, attention="dot_product")
  return ref, fused


def _inputs(b=3, l=12, d=64):
  """Embeddings float[B, L, D] and masks: None (plain causal, the train step's
  case) and one whose rows are full, right-padded and left-padded."""
  x = jax.random.normal(jax.random.key(1), (b, l, d))
  ar = jnp.arange(l)[None, :]
  padded = jnp.stack([ar[0] < l, ar[0] < l - 4, ar[0] >= 5])
  return x, {"causal": None, "padded": padded}


def _assert_trees_close(got, want):
  """Every leaf within TOL × the largest |value| of ``want`` (fp32 sums of
  O(100) terms: the gradients here reach ~40)."""
  scale = max(float(np.abs(a).max()) for a in jax.tree.leaves(want))
  assert scale > 0
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(want), jax.tree.leaves(got)):
    np.testing.assert_allclose(b, a, atol=TOL * max(scale, 1.0), rtol=0,
                               err_msg=jax.tree_util.keystr(path))


def test_resolve_picks_per_platform_and_refuses_bad_names():
  bf16, f32 = jnp.bfloat16, jnp.float32
  assert attention.resolve("auto", bf16, platform="gpu") == "cudnn_else_xla"
  assert attention.resolve("auto", f32, platform="gpu") == "xla"
  assert attention.resolve("auto", bf16, platform="gpu", decode=True) == "einsum"
  assert attention.resolve("auto", f32, platform="cpu") == "einsum"
  assert attention.resolve("dot_product", bf16, platform="cpu") == "xla"
  assert attention.resolve("dot_product", bf16, platform="tpu") == "xla"
  assert attention.resolve("einsum", bf16, platform="gpu") == "einsum"
  with pytest.raises(ValueError, match="attention='flash'.*choose one of"):
    attention.resolve("flash", f32)
  with pytest.raises(ValueError, match="'cudnn' needs bf16"):
    attention.resolve("cudnn", f32, platform="gpu")
  with pytest.raises(ValueError, match="config.model.attention='x'"):
    LM(tiny.get_model_config().lm, rngs=nnx.Rngs(0), attention="x")


def test_cudnn_else_xla_falls_back_where_cudnn_refuses():
  """``dot_product`` / ``auto`` on a GPU ask cuDNN first; where it refuses the call
  at trace time (here: no cuDNN on the CPU) XLA's kernel gives the result, while
  an explicit ``cudnn`` raises."""
  rng = np.random.default_rng(0)
  q, k, v = (jnp.asarray(rng.normal(size=s), jnp.bfloat16)
             for s in ((2, 5, 4, 8), (2, 5, 2, 8), (2, 5, 2, 8)))
  with pytest.raises(RuntimeError):
    attention.fused(q, k, v, impl="cudnn", is_causal=True)
  got = attention.fused(q, k, v, impl="cudnn_else_xla", is_causal=True)
  want = attention.fused(q, k, v, impl="xla", is_causal=True)
  np.testing.assert_array_equal(np.asarray(got, np.float32), np.asarray(want, np.float32))


def test_lm_fused_equals_einsum_forward_and_gradients():
  """Unrolled layers; the scanned, rematerialised stack: the mesh test below."""
  ref, fused = _lm_pair(False)
  x, masks = _inputs()
  pos = jnp.broadcast_to(jnp.arange(x.shape[1]), x.shape[:2])

  @nnx.jit
  def loss_and_grads(lm, x, mask):
    def loss(lm, x):
      h, _ = lm.backbone(x, pos, mask_bl=mask)
      w = jnp.ones(h.shape[:2]) if mask is None else mask.astype(jnp.float32)
      return jnp.sum(jnp.sin(h).sum(-1) * w), h
    (value, h), (g_lm, g_x) = nnx.value_and_grad(loss, argnums=(0, 1), has_aux=True)(lm, x)
    return value, h, nnx.to_pure_dict(nnx.state(g_lm)), g_x

  for name, mask in masks.items():
    v_ref, h_ref, g_ref, gx_ref = loss_and_grads(ref, x, mask)
    v_f, h_f, g_f, gx_f = loss_and_grads(fused, x, mask)
    valid = np.ones(x.shape[:2], bool) if mask is None else np.asarray(mask)
    np.testing.assert_allclose(np.asarray(h_f)[valid], np.asarray(h_ref)[valid], atol=TOL,
                               err_msg=name)
    np.testing.assert_allclose(v_f, v_ref, rtol=1e-6, err_msg=name)
    _assert_trees_close(g_f, g_ref)
    _assert_trees_close(gx_f, gx_ref)


@pytest.mark.parametrize("scan", [False, True], ids=["unrolled", "scanned"])
def test_lm_fused_kv_cache_equals_full_forward(scan):
  """Left-padded prompts prefilled into the cache, then two one-token steps
  (the decode path forced to the fused kernel too): the logits equal the
  einsum model's full forward at the real positions."""
  ref, fused = _lm_pair(scan)
  x, _ = _inputs(l=10)
  mask = jnp.arange(10)[None, :] >= jnp.array([0, 3, 7])[:, None]     # left-padded
  pos = jnp.maximum(jnp.cumsum(mask, axis=1) - 1, 0)
  p = 8
  full, _ = nnx.jit(lambda lm, x: lm(x, pos, mask_bl=mask))(ref, x)

  @nnx.jit
  def cached(lm, x):
    cache = lm.init_cache(x.shape[0], 16)
    out, cache = lm(x[:, :p], pos[:, :p], mask_bl=mask[:, :p], cache=cache)
    for t in range(p, x.shape[1]):
      step, cache = lm(x[:, t:t + 1], pos[:, t:t + 1], cache=cache)
      out = jnp.concatenate([out, step], axis=1)
    return out

  got = np.asarray(cached(fused, x))
  valid = np.asarray(mask)
  np.testing.assert_allclose(got[valid], np.asarray(full)[valid], atol=TOL)
  np.testing.assert_allclose(got[valid], np.asarray(cached(ref, x))[valid], atol=TOL)


def test_generate_fused_equals_einsum_tokens():
  ref, fused = _lm_pair(False)
  x, _ = _inputs(l=10)
  mask = jnp.arange(10)[None, :] >= jnp.array([0, 3, 7])[:, None]     # left-padded
  kw = dict(max_new_tokens=6, eos_id=-1)
  want = generate(ref, x, mask, **kw)
  got = generate(fused, x, mask, **kw)
  np.testing.assert_array_equal(got, want)


def _batch(m, b=8, seed=0):
  """A right-padded synthetic batch (the last rows end early)."""
  rng = np.random.default_rng(seed)
  t, n = m.num_frames, num_visual_tokens(m)
  length = n + 16
  tokens = rng.integers(5, m.lm.vocab_size, (b, length)).astype(np.int32)
  tokens[:, 2:2 + n] = m.visual_token_id
  loss_mask = np.zeros((b, length), np.float32)
  for i in range(b):
    end = length - (i % 4) * 3
    tokens[i, end:] = 0
    loss_mask[i, n + 4:end - 1] = 1.0
  return dict(frames=rng.integers(0, 256, (b, t, m.frame_size, m.frame_size, 3), np.uint8),
              faces=rng.integers(0, 256, (b, t, m.face_size, m.face_size, 3), np.uint8),
              face_mask=rng.random((b, t)) > 0.2, tokens=tokens,
              targets=np.roll(tokens, -1, axis=1), loss_mask=loss_mask)


def test_train_step_gradients_fused_equal_einsum_on_the_mesh():
  """The whole model on the (2, 2, 2) mesh — both ViTs, the face stream's
  attention pooling (a cross-attention), the LM; layers scanned and fully
  rematerialised, as the paper config runs — the fused path's loss and every
  gradient equal the einsum path's."""
  mesh = sharding.make_mesh((2, 2, 2))
  out = {}
  for a in ("einsum", "dot_product"):
    config = tiny_synthetic.get_config()
    config.model.lm.depth = config.model.vit.depth = config.model.face_vit.depth = 1
    config.model.scan_layers, config.model.remat = True, "full"
    config.model.compressor.face_pool = "attn"
    config.model.attention = a
    batch = _batch(config.model)
    setup = train_step.make_setup(config, mesh)
    params = train_step.init_state(config, setup)["params"]
    batch = jax.device_put(batch, train_step.batch_shardings(
        mesh, {k: v.ndim for k, v in batch.items()}))
    with sharding.use_mesh(mesh):
      sums, grads = jax.jit(train_step.make_grad_fn(setup))(params, setup.rest, batch)
    out[a] = jax.device_get((sums, grads))
  (s_ref, g_ref), (s_f, g_f) = out["einsum"], out["dot_product"]
  np.testing.assert_allclose(s_f["ce"], s_ref["ce"], rtol=1e-6)
  _assert_trees_close(g_f, g_ref)
