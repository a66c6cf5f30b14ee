"""KV-cached decoding and generate(): equal to the full forward pass."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs.tiny import get_config
from facetrack_jax import sharding
from facetrack_jax.convert.safetensors_io import materialize
from facetrack_jax.generate import _pick, generate, generate_from_tokens, left_align
from facetrack_jax.models.lm import LM

NEW = 8          # tokens generated per prompt
LENGTHS = (3, 6, 5, 1)   # prompt lengths, left-padded to 6


CFG = get_config().model.lm
CFG.tie_embeddings = False    # an untied head: logits of order 1 (tied: import test)


def _random_weights(seed=0):
  """Numpy weights for every LM parameter (fan-in scaled; norms and biases
  random too, so every path matters). Cheaper than compiling the jax init."""
  rng = np.random.default_rng(seed)
  with sharding.use_mesh():
    abstract = nnx.state(nnx.eval_shape(lambda: LM(CFG, rngs=nnx.Rngs(0))))
  out = {}
  for path, var in nnx.to_flat_state(abstract):
    name, shape = ".".join(map(str, path)), var.get_value().shape
    if name.endswith("scale"):
      out[name] = rng.uniform(0.5, 1.5, shape)
    elif name.endswith("bias"):
      out[name] = rng.normal(0, 0.3, shape)
    else:
      fan_in = np.prod(shape[:2]) if name.endswith("attn.o.kernel") else shape[0]
      out[name] = rng.normal(0, 1 if name == "embedding" else fan_in ** -0.5, shape)
  return out


@pytest.fixture(scope="module")
def weights():
  return _random_weights()


@pytest.fixture(scope="module")
def lm(weights):
  return materialize(lambda: LM(CFG, rngs=nnx.Rngs(0)), weights)


@pytest.fixture(scope="module")
def prompts():
  """Left-padded prompts: tokens int32[4, 6], mask bool[4, 6], and each row alone."""
  rng = np.random.default_rng(0)
  rows = [rng.integers(5, 512, n).astype(np.int32) for n in LENGTHS]
  p = max(LENGTHS)
  tokens = np.zeros((len(rows), p), np.int32)
  mask = np.zeros((len(rows), p), bool)
  for i, r in enumerate(rows):
    tokens[i, p - len(r):], mask[i, p - len(r):] = r, True
  return tokens, mask, rows


@nnx.jit
def _full(lm, tokens, positions, mask):
  return lm(lm.embed(tokens), positions, mask_bl=mask)[0]


@nnx.jit
def _cached(lm, tokens, positions, mask, cache):
  return lm(lm.embed(tokens), positions, mask_bl=mask, cache=cache)


def test_cached_steps_equal_full_forward(lm, prompts):
  tokens, mask, _ = prompts
  more = np.random.default_rng(1).integers(5, 512, (4, 4)).astype(np.int32)
  seq = np.concatenate([tokens, more], 1)                       # [4, 10], left-padded
  seq_mask = np.concatenate([mask, np.ones_like(more, bool)], 1)
  pos = np.maximum(np.cumsum(seq_mask, 1) - 1, 0).astype(np.int32)
  full = np.asarray(_full(lm, seq, pos, seq_mask))

  # Prefill in two chunks of 3 tokens, then one token at a time; 3 spare slots.
  cache = lm.init_cache(4, 13)
  steps = []
  for a, b in [(0, 3), (3, 6)] + [(i, i + 1) for i in range(6, 10)]:
    logits, cache = _cached(lm, seq[:, a:b], pos[:, a:b], seq_mask[:, a:b], cache)
    steps.append(np.asarray(logits))
  assert int(cache.index) == 10 and np.array_equal(np.asarray(cache.valid)[:, :10], seq_mask)
  stepped = np.concatenate(steps, 1)
  np.testing.assert_allclose(stepped[seq_mask], full[seq_mask], atol=1e-5, rtol=0)
  assert np.abs(full[seq_mask]).max() > 0.1      # not vacuous


def _greedy_reference(lm, rows, eos_id):
  """Python loop: full forward (no cache) on the growing sequence, argmax of the
  last valid position. Each row alone, in a fixed right-padded buffer so one
  compilation serves every step (right pads cannot affect earlier positions)."""
  out = np.zeros((len(rows), NEW), np.int32)
  size = max(LENGTHS) + NEW
  pos = np.arange(size, dtype=np.int32)[None]
  for i, row in enumerate(rows):
    seq = list(row)
    for t in range(NEW):
      buf = np.zeros((1, size), np.int32)
      buf[0, :len(seq)] = seq
      logits = np.asarray(_full(lm, buf, pos, (np.arange(size) < len(seq))[None]))
      out[i, t] = logits[0, len(seq) - 1].argmax()
      seq.append(out[i, t])
      if out[i, t] == eos_id:
        break
  return out


def test_greedy_generate_equals_reference_loop(lm, prompts):
  tokens, mask, rows = prompts
  x = lm.embed(tokens)
  free = _greedy_reference(lm, rows, eos_id=-1)
  np.testing.assert_array_equal(
      generate(lm, x, mask, max_new_tokens=NEW, eos_id=-1), free)
  assert len(set(map(tuple, free))) > 1          # rows really differ

  # EOS = row 0's 4th token: row 0 stops there (pads after), rows without it run on.
  eos = int(free[0, 3])
  ref = _greedy_reference(lm, rows, eos_id=eos)
  got = np.asarray(generate(lm, x, mask, max_new_tokens=NEW, eos_id=eos, pad_id=0))
  np.testing.assert_array_equal(got, ref)
  stop = list(got[0]).index(eos)
  assert stop <= 3 and (got[0, stop + 1:] == 0).all()
  assert np.asarray(generate_from_tokens(lm, tokens, mask, max_new_tokens=NEW,
                                         eos_id=eos)).tolist() == got.tolist()

  # Right-padded prompts are refused, and left_align turns them into these ones.
  right_tokens, right_mask = np.zeros_like(tokens), np.zeros_like(mask)
  for i, row in enumerate(rows):
    right_tokens[i, :len(row)], right_mask[i, :len(row)] = row, True
  with pytest.raises(ValueError, match="left-padded"):
    generate_from_tokens(lm, right_tokens, right_mask, max_new_tokens=NEW, eos_id=eos)
  x_left, mask_left = left_align(lm.embed(right_tokens), right_mask)
  np.testing.assert_array_equal(mask_left, mask)
  np.testing.assert_array_equal(x_left[mask], np.asarray(x)[mask])
  with pytest.raises(ValueError, match="no valid token"):
    generate(lm, x, mask & False, max_new_tokens=NEW, eos_id=eos)


def test_sampling(lm, prompts):
  tokens, mask, _ = prompts
  x = lm.embed(tokens)
  greedy = np.asarray(generate(lm, x, mask, max_new_tokens=NEW, eos_id=-1))
  sample = lambda seed, **kw: np.asarray(generate(
      lm, x, mask, max_new_tokens=NEW, eos_id=-1, rng=jax.random.key(seed), **kw))
  a = sample(0, temperature=1.0)
  np.testing.assert_array_equal(a, sample(0, temperature=1.0))
  assert not np.array_equal(a, sample(1, temperature=1.0))
  assert not np.array_equal(a, greedy)
  np.testing.assert_array_equal(sample(2, temperature=1e-6), greedy)
  np.testing.assert_array_equal(sample(3, temperature=1.0, top_p=1e-6), greedy)
  with pytest.raises(ValueError, match="rng is required"):
    generate(lm, x, mask, max_new_tokens=2, eos_id=1, temperature=0.5)


def test_top_p_samples_the_renormalised_nucleus():
  probs = np.array([0.5, 0.3, 0.15, 0.05])
  logits = jnp.log(jnp.asarray(probs, jnp.float32))[None].repeat(4000, 0)
  pick = jax.jit(_pick)
  draw = lambda p, t=1.0: np.bincount(np.asarray(
      pick(logits, jax.random.key(0), jnp.float32(t), jnp.float32(p))), minlength=4) / 4000
  # Mass before token 1 is 0.5 < 0.7 (kept), before token 2 is 0.8 (dropped).
  np.testing.assert_allclose(draw(0.7), [0.625, 0.375, 0, 0], atol=0.03)
  np.testing.assert_allclose(draw(1.0), probs, atol=0.03)
  # Temperature 2 flattens: p ∝ sqrt(probs).
  np.testing.assert_allclose(draw(1.0, 2.0), np.sqrt(probs) / np.sqrt(probs).sum(), atol=0.03)


def test_generate_under_mesh_equals_unsharded(lm, weights, prompts):
  tokens, mask, _ = prompts
  mesh = sharding.make_mesh((2, 2, 2))
  sharded = materialize(lambda: LM(CFG, rngs=nnx.Rngs(0)), weights, mesh)
  qkv = sharded.blocks[0].attn.qkv.kernel[...]          # [D, KVH, G+2, Dh]
  assert qkv.sharding.is_equivalent_to(
      sharding.named_sharding(mesh, ("embed", "kv_heads", "fused", "head_dim")), qkv.ndim)
  assert len(qkv.addressable_shards) == 8
  assert qkv.addressable_shards[0].data.shape == (qkv.shape[0] // 2, qkv.shape[1] // 2,
                                                  qkv.shape[2], qkv.shape[3])
  kw = dict(max_new_tokens=NEW, eos_id=-1)
  want_greedy = np.asarray(generate(lm, lm.embed(tokens), mask, **kw))
  want_sample = np.asarray(generate(lm, lm.embed(tokens), mask, rng=jax.random.key(0),
                                    temperature=1.0, **kw))
  with sharding.use_mesh(mesh):
    x = jax.device_put(sharded.embed(tokens),
                       sharding.named_sharding(mesh, ("batch", "length", "act_embed")))
    got_greedy = generate(sharded, x, mask, **kw)
    got_sample = generate(sharded, x, mask, rng=jax.random.key(0), temperature=1.0, **kw)
  np.testing.assert_array_equal(np.asarray(got_greedy), want_greedy)
  np.testing.assert_array_equal(np.asarray(got_sample), want_sample)
