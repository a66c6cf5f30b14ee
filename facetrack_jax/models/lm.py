"""Decoder-only language model of the Qwen2 / Llama family (Flax NNX).

    tokens ─ embed ─┐            (or any embeddings: visual tokens spliced in)
                    x ─ depth × [ RMSNorm ─ GQA attention (RoPE) ─ + ─ RMSNorm ─ SwiGLU ─ + ] ─ RMSNorm ─ LM head

Semantics follow HF ``Qwen2ForCausalLM`` / ``LlamaForCausalLM`` so their
weights load without permutation (``facetrack_jax/convert/llm.py``):
RMSNorm in fp32 then ``* w``; RoPE with the ``rotate_half`` convention;
q/k/v biases only for Qwen2 (``cfg.qkv_bias``); no bias on the output
projection; LM head tied to the embedding or not (``cfg.tie_embeddings``).

The model takes *embeddings*, a per-token validity mask (pads never attend
nor are attended) and explicit positions; with a :class:`KVCache` the new
tokens are appended at the cache index and attend to every valid cached
slot at or before their own slot. The cache is a pytree passed in and
returned, so decoding runs inside ``jit`` / ``lax.while_loop``.

Layers are unrolled or scanned (``scan_layers``: parameters stacked on a
leading "layers" axis, one compiled layer) and rematerialised by policy name
(``remat``); both from ``config.model`` (:mod:`facetrack_jax.models.layers`).
Attention runs through the einsums below or ``jax.nn.dot_product_attention``
(cuDNN flash attention on GPU), by ``config.model.attention``
(:mod:`facetrack_jax.models.attention`); the einsums are the reference.

Config: ``config.model.lm`` (``configs/tiny.py``): vocab_size, width, depth,
num_heads, num_kv_heads, head_dim, mlp_dim, rope_theta, rms_eps, qkv_bias,
tie_embeddings, max_len.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx, struct
from jax.ad_checkpoint import checkpoint_name

from facetrack_jax import sharding
from facetrack_jax.models import attention as attention_paths
from facetrack_jax.models import layers
from facetrack_jax.models.matmul import linear_dot_general

_ACT = ("batch", "length", "act_embed")
_ACT_Q = ("batch", "length", "act_heads", "head_dim")
_ACT_KV = ("batch", "length", "act_kv_heads", "head_dim")
_CACHE = ("batch", "act_kv_heads", "length", "head_dim")     # head-major keys / values
_CACHE_STACK = ("layers",) + _CACHE                          # every layer's, stacked


def _init(in_axes: tuple[int, ...], out_axes: tuple[int, ...]):
  """Fan-in scaled truncated normal for a kernel contracting ``in_axes``."""
  return nnx.initializers.variance_scaling(
      1.0, "fan_in", "truncated_normal", in_axis=in_axes, out_axis=out_axes)


@struct.dataclass
class KVCache:
  """Keys/values of every layer, per slot.

  k, v: per layer ``float[B, KVH, S, Dh]`` (keys already rotated; head-major,
  the layout the attention einsums read, so no step transposes it): a tuple
  of NL arrays for unrolled layers, one ``float[NL, B, KVH, S, Dh]`` stack for
  scanned ones; each step writes only its new tokens into them;
  valid: ``bool[B, S]`` slots holding a real (non-pad) token;
  index: ``int32[]`` the next slot to write (same for every row).
  """
  k: tuple[jax.Array, ...]
  v: tuple[jax.Array, ...]
  valid: jax.Array
  index: jax.Array

  @property
  def max_len(self) -> int:
    return self.valid.shape[1]


class Dense(nnx.Module):
  """``y = x[..., *shape[:n_in]] · kernel[*shape] (+ bias)``: the last ``n_in``
  dims of x contracted with the first ``n_in`` of the kernel (the einsum at
  each construction site), logically named axes. The matmul is
  :func:`~facetrack_jax.models.matmul.linear_dot_general` (fast weight
  gradient on CPU). The kernel is cast to the compute dtype while still
  sharded, so that a GPU/TPU compile can all-gather it in bf16 rather than
  the fp32 master weights (XLA:CPU runs bf16 collectives in f32 regardless)."""

  def __init__(self, shape: tuple[int, ...], axes: tuple[str, ...],
               n_in: int, *, bias_axes: tuple[str, ...] | None = None,
               dtype, param_dtype, rngs: nnx.Rngs):
    self.n_in, self.dtype, self.axes = n_in, dtype, tuple(axes)
    init = _init(tuple(range(n_in)), tuple(range(n_in, len(shape))))
    self.kernel = nnx.Param(init(rngs.params(), shape, param_dtype), out_sharding=axes)
    self.bias = (None if bias_axes is None else
                 nnx.Param(jnp.zeros(shape[n_in:], param_dtype), out_sharding=bias_axes))

  def __call__(self, x):
    n, nx = self.n_in, x.ndim
    dims = ((tuple(range(nx - n, nx)), tuple(range(n))), ((), ()))
    kernel = sharding.constrain(self.kernel[...].astype(self.dtype), self.axes)
    y = linear_dot_general(x.astype(self.dtype), kernel, dims)
    if self.bias is not None:
      y = y + self.bias[...].astype(self.dtype)
    return y


class RMSNorm(nnx.Module):
  """HF RMSNorm: ``x * rsqrt(mean(x²) + eps)`` in fp32, cast back, ``* w``."""

  def __init__(self, width: int, eps: float, *, dtype, param_dtype):
    self.eps, self.dtype = eps, dtype
    self.scale = nnx.Param(jnp.ones((width,), param_dtype), out_sharding=("norm",))

  def __call__(self, x_bld):
    x = x_bld.astype(jnp.float32)
    x = x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + self.eps)
    return x.astype(self.dtype) * self.scale[...].astype(self.dtype)


def rope_angles(positions_bl: jax.Array, head_dim: int, theta: float):
  """(cos, sin) float32[B, L, 1, Dh] of the rotary embedding at ``positions``
  (int[B, L]); computed once per forward pass and shared by every layer."""
  inv_freq = 1.0 / (theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
  freqs = positions_bl.astype(jnp.float32)[..., None] * inv_freq       # [B, L, Dh/2]
  angles = jnp.concatenate([freqs, freqs], axis=-1)[:, :, None, :]     # [B, L, 1, Dh]
  return jnp.cos(angles), jnp.sin(angles)


def rope(x_blhd: jax.Array, cos_sin) -> jax.Array:
  """Rotary embedding, HF ``rotate_half`` layout (first half / second half of
  head_dim are the two coordinates of each rotated pair).

  x: float[B, L, H, Dh]; cos_sin: :func:`rope_angles` of the positions.
  """
  cos, sin = (c.astype(x_blhd.dtype) for c in cos_sin)
  x1, x2 = jnp.split(x_blhd, 2, axis=-1)
  rotated = jnp.concatenate([-x2, x1], axis=-1)
  return x_blhd * cos + rotated * sin


def attention_mask(mask_bl: jax.Array, key_valid_bs: jax.Array, q_slot_l: jax.Array):
  """bool[B, 1, 1, L, S]: query valid, key valid, key slot not after the query's
  slot (``q_slot_l`` int[L]; keys sit in slots 0..S-1). Computed once per
  forward pass, outside the layer loop: inside it, remat would store a copy
  of this input-only mask for every layer."""
  k_slot_s = jnp.arange(key_valid_bs.shape[1])
  allowed_bls = (mask_bl[:, :, None] & key_valid_bs[:, None, :]
                 & (k_slot_s[None, None, :] <= q_slot_l[None, :, None]))
  return allowed_bls[:, None, None, :, :]


class Masks(NamedTuple):
  """Which keys each query may attend, in the form the attention path reads.

  impl: the path (:func:`attention_paths.resolve`): "einsum", "xla", "cudnn" or "cudnn_else_xla";
  allowed_b11ls: bool[B, 1, 1, L, S] (:func:`attention_mask`), the einsums'
  and the cached fused path's mask (None for an uncached fused pass);
  key_b11s: bool[B, 1, 1, S] key validity for an uncached fused pass (None: all
  valid, plain causal attention, cuDNN's fastest case);
  q_valid_bl: bool[B, L] (None: all valid), fused outputs zeroed elsewhere.
  """
  impl: str
  allowed_b11ls: jax.Array | None = None
  key_b11s: jax.Array | None = None
  q_valid_bl: jax.Array | None = None


class Attention(nnx.Module):
  """Grouped-query attention: H query heads share KVH key/value heads."""

  def __init__(self, cfg, *, dtype, param_dtype, rngs):
    d, h, kvh, dh = cfg.width, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    if h % kvh:
      raise ValueError(f"lm config: num_heads={h} is not a multiple of num_kv_heads={kvh}")
    self.num_heads, self.num_kv_heads, self.head_dim = h, kvh, dh
    self.dtype = dtype
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    # q, k and v in one matmul, "bld,dkge->blkge": per kv head k its G = H/KVH
    # query heads, then its key, then its value (g = 0..G+1). Sharding the kv
    # heads keeps each group whole on one device; query head k·G + g is HF's
    # head j (which reads kv head j // G).
    bias = ("kv_heads", "fused", "head_dim") if cfg.qkv_bias else None
    self.qkv = Dense((d, kvh, h // kvh + 2, dh), ("embed", "kv_heads", "fused", "head_dim"), 1,
                     bias_axes=bias, **kw)
    # "blhk,hkd->bld": heads × head_dim back to width, no bias.
    self.o = Dense((h, dh, d), ("heads", "head_dim", "embed"), 2, **kw)

  def __call__(self, x_bld, cos_sin, masks: "Masks", cache_kv):
    """x: float[B, L, D]; cos_sin: :func:`rope_angles`; masks: :class:`Masks`
    (S = L without a cache); cache_kv: None or (k, v, index, layer): k, v this
    layer's cache float[B, KVH, S, Dh] (``layer`` None) or every layer's
    float[NL, B, KVH, S, Dh] with ``layer`` this block's row (scanned).
    Returns (float[B, L, D], the updated (k, v) or None)."""
    b, l, _ = x_bld.shape
    g = self.num_heads // self.num_kv_heads
    qkv_blkgd = checkpoint_name(self.qkv(x_bld), layers.QKV)
    q = qkv_blkgd[:, :, :, :g].reshape(b, l, self.num_heads, self.head_dim)
    q = sharding.constrain(rope(q, cos_sin), _ACT_Q)
    k = sharding.constrain(rope(qkv_blkgd[:, :, :, g], cos_sin), _ACT_KV)
    v = sharding.constrain(qkv_blkgd[:, :, :, g + 1], _ACT_KV)

    if cache_kv is None and masks.impl != "einsum":
      # Causal over the new tokens themselves, [B, L, KVH, Dh] as projected.
      out = attention_paths.fused(q, k, v, impl=masks.impl, is_causal=True,
                                  mask=masks.key_b11s, q_valid_bt=masks.q_valid_bl)
      return self._out(out), None

    k_bksd = sharding.constrain(k.transpose(0, 2, 1, 3), _CACHE)
    v_bksd = sharding.constrain(v.transpose(0, 2, 1, 3), _CACHE)
    if cache_kv is None:     # keys are the new tokens themselves
      keys, values, stored = k_bksd, v_bksd, None
    else:                    # write the new tokens at the index, attend to the cache
      ck, cv, start, layer = cache_kv
      if layer is None:
        keys = jax.lax.dynamic_update_slice(ck, k_bksd.astype(ck.dtype), (0, 0, start, 0))
        values = jax.lax.dynamic_update_slice(cv, v_bksd.astype(cv.dtype), (0, 0, start, 0))
        stored = keys, values = sharding.constrain(keys, _CACHE), sharding.constrain(values, _CACHE)
      else:                  # only the new tokens are written into the stack
        at = (layer, 0, 0, start, 0)
        ck = jax.lax.dynamic_update_slice(ck, k_bksd[None].astype(ck.dtype), at)
        cv = jax.lax.dynamic_update_slice(cv, v_bksd[None].astype(cv.dtype), at)
        stored = (sharding.constrain(ck, _CACHE_STACK), sharding.constrain(cv, _CACHE_STACK))
        keys, values = (sharding.constrain(jax.lax.dynamic_index_in_dim(c, layer, keepdims=False),
                                           _CACHE) for c in (ck, cv))

    if masks.impl != "einsum":   # the cache read as [B, S, KVH, Dh] (a transpose)
      to_bskd = lambda c: sharding.constrain(c.astype(self.dtype).transpose(0, 2, 1, 3), _ACT_KV)
      out = attention_paths.fused(q, to_bskd(keys), to_bskd(values), impl=masks.impl,
                                  mask=masks.allowed_b11ls[:, :, 0], q_valid_bt=masks.q_valid_bl)
      return self._out(out), stored

    q_blkgd = q.reshape(b, l, self.num_kv_heads, g, self.head_dim)
    allowed_b11ls = masks.allowed_b11ls
    # "blkgd,bksd->bkgls": scores of each query head against its kv head, fp32.
    scores = jnp.einsum("blkgd,bksd->bkgls", q_blkgd, keys.astype(self.dtype),
                        preferred_element_type=jnp.float32) * self.head_dim ** -0.5
    scores = jnp.where(allowed_b11ls, scores, jnp.finfo(jnp.float32).min)
    # Pad queries attend to nothing (their row of probabilities is zeroed).
    probs = jnp.where(allowed_b11ls, jax.nn.softmax(scores, axis=-1), 0.0)
    # "bkgls,bksd->blkgd": weighted values.
    out = jnp.einsum("bkgls,bksd->blkgd", probs.astype(self.dtype), values.astype(self.dtype))
    return self._out(out.reshape(b, l, self.num_heads, self.head_dim)), stored

  def _out(self, out_blhd):
    """float[B, L, H, Dh] -> the output projection float[B, L, D]."""
    out_blhd = checkpoint_name(sharding.constrain(out_blhd, _ACT_Q), layers.ATTN_OUT)
    return checkpoint_name(self.o(out_blhd), layers.OUT_PROJ)


class MLP(nnx.Module):
  """SwiGLU: ``down(silu(gate(x)) * up(x))``."""

  def __init__(self, cfg, *, dtype, param_dtype, rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    d, f = cfg.width, cfg.mlp_dim
    # "bld,dsf->blsf": gate (s = 0) and up (s = 1) in one matmul; "blf,fd->bld": down.
    self.gate_up = Dense((d, 2, f), ("embed", "fused", "mlp"), 1, **kw)
    self.down = Dense((f, d), ("mlp", "embed"), 1, **kw)

  def __call__(self, x_bld):
    gate_up_bl2f = self.gate_up(x_bld)
    h_blf = jax.nn.silu(gate_up_bl2f[:, :, 0]) * gate_up_bl2f[:, :, 1]
    h_blf = sharding.constrain(h_blf, ("batch", "length", "act_mlp"))
    return checkpoint_name(self.down(h_blf), layers.MLP_OUT)


class Block(nnx.Module):
  """Pre-norm decoder layer: attention then SwiGLU, each with a residual."""

  def __init__(self, cfg, *, dtype, param_dtype, rngs):
    self.attn_norm = RMSNorm(cfg.width, cfg.rms_eps, dtype=dtype, param_dtype=param_dtype)
    self.attn = Attention(cfg, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.mlp_norm = RMSNorm(cfg.width, cfg.rms_eps, dtype=dtype, param_dtype=param_dtype)
    self.mlp = MLP(cfg, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

  def __call__(self, x_bld, cos_sin, masks: Masks, cache_kv):
    a_bld, stored = self.attn(self.attn_norm(x_bld), cos_sin, masks, cache_kv)
    x_bld = sharding.constrain(x_bld + a_bld, _ACT)
    x_bld = sharding.constrain(x_bld + self.mlp(self.mlp_norm(x_bld)), _ACT)
    return x_bld, stored


class LM(nnx.Module):
  """Qwen2/Llama decoder. See the module docstring."""

  def __init__(self, cfg, *, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs,
               scan_layers: bool = False, remat: str = "none", attention: str = "auto"):
    dtype, param_dtype = jnp.dtype(dtype), jnp.dtype(param_dtype)
    self.dtype, self.max_len = dtype, cfg.max_len
    self.attention = attention_paths.check(attention)
    self.num_kv_heads, self.head_dim, self.depth = cfg.num_kv_heads, cfg.head_dim, cfg.depth
    self.theta = cfg.rope_theta
    self.scan_layers, self.remat = bool(scan_layers), layers.check_remat(remat)
    v, d = cfg.vocab_size, cfg.width
    self.embedding = nnx.Param(
        nnx.initializers.normal(0.02)(rngs.params(), (v, d), param_dtype),
        out_sharding=("vocab", "embed"))
    self.blocks = layers.make_blocks(
        lambda r: Block(cfg, dtype=dtype, param_dtype=param_dtype, rngs=r), cfg.depth, rngs,
        scan=self.scan_layers)
    self.final_norm = RMSNorm(d, cfg.rms_eps, dtype=dtype, param_dtype=param_dtype)
    # "bld,dv->blv": width to vocabulary logits (None: tied to the embedding).
    self.lm_head = (None if cfg.tie_embeddings else
                    Dense((d, v), ("embed", "vocab"), 1,
                          dtype=dtype, param_dtype=param_dtype, rngs=rngs))

  def embed(self, tokens_bl: jax.Array) -> jax.Array:
    """int32[B, L] -> float[B, L, D]."""
    # Gather the (small) token ids, not the table: each device looks every
    # token up in its own slice of the table's width, then the rows move to the
    # batch sharding. Gathering the table instead costs a full [V, D] copy and,
    # in the backward pass, a full-size gradient all-reduce per step (paper
    # config, 256 devices: 2.2 GB each, fp32).
    tokens_bl = sharding.constrain(tokens_bl, ("batch_data", None))
    x_bld = sharding.constrain(jnp.take(self.embedding[...], tokens_bl, axis=0),
                               ("batch_data", None, "embed"))
    return sharding.constrain(x_bld.astype(self.dtype), _ACT)

  def init_cache(self, batch: int, max_len: int, dtype=None) -> KVCache:
    """An empty cache of ``max_len`` slots (all invalid, index 0)."""
    dtype = self.dtype if dtype is None else jnp.dtype(dtype)
    shape = (batch, self.num_kv_heads, max_len, self.head_dim)
    if self.scan_layers:
      zeros = lambda: sharding.constrain(jnp.zeros((self.depth, *shape), dtype), _CACHE_STACK)
    else:
      zeros = lambda: tuple(sharding.constrain(jnp.zeros(shape, dtype), _CACHE)
                            for _ in range(self.depth))
    return KVCache(k=zeros(), v=zeros(), valid=jnp.zeros((batch, max_len), bool),
                   index=jnp.zeros((), jnp.int32))

  def backbone(self, x_bld, positions_bl, *, mask_bl=None, cache: KVCache | None = None):
    """Decoder stack and final norm: (float[B, L, D], cache)."""
    b, l, _ = x_bld.shape
    impl = attention_paths.resolve(self.attention, self.dtype,
                                   decode=cache is not None and l == 1)
    given_bl = None if mask_bl is None else mask_bl.astype(bool)
    mask_bl = jnp.ones((b, l), bool) if given_bl is None else given_bl
    x_bld = sharding.constrain(x_bld.astype(self.dtype), _ACT)
    cos_sin = rope_angles(positions_bl, self.head_dim, self.theta)
    run = lambda body, carry, remat: layers.apply_blocks(
        self.blocks, body, carry, scan=self.scan_layers, remat=remat)
    if cache is None:
      if impl == "einsum":
        masks = Masks(impl, allowed_b11ls=attention_mask(mask_bl, mask_bl, jnp.arange(l)))
      else:    # causal inside the kernel; pads (if any) as a key mask
        masks = Masks(impl, key_b11s=None if given_bl is None else given_bl[:, None, None, :],
                      q_valid_bl=given_bl)
      x_bld = run(lambda block, x, i: block(x, cos_sin, masks, None)[0], x_bld, self.remat)
    else:    # no gradient flows through decoding: no remat
      valid = jax.lax.dynamic_update_slice(cache.valid, mask_bl, (0, cache.index))
      allowed = attention_mask(mask_bl, valid, cache.index + jnp.arange(l))
      masks = Masks(impl, allowed_b11ls=allowed, q_valid_bl=mask_bl)

      def body(block, carry, i):
        x, k, v = carry
        if self.scan_layers:    # the stacks, and this block's row in them
          x, (k, v) = block(x, cos_sin, masks, (k, v, cache.index, i))
          return x, k, v
        x, (k_i, v_i) = block(x, cos_sin, masks, (k[i], v[i], cache.index, None))
        return x, k[:i] + (k_i,) + k[i + 1:], v[:i] + (v_i,) + v[i + 1:]

      x_bld, k, v = run(body, (x_bld, cache.k, cache.v), "none")
      cache = KVCache(k=k, v=v, valid=valid, index=cache.index + l)
    return self.final_norm(x_bld), cache

  def logits(self, h_bld: jax.Array) -> jax.Array:
    """float[B, L, D] -> fp32 logits float[B, L, V]."""
    if self.lm_head is None:
      # "bld,vd->blv": tied head, the embedding matrix transposed.
      out = jnp.einsum("bld,vd->blv", h_bld, self.embedding[...].astype(self.dtype))
    else:
      out = self.lm_head(h_bld)
    return sharding.constrain(out.astype(jnp.float32), ("batch", "length", "act_vocab"))

  def __call__(self, x_bld, positions_bl, *, mask_bl=None, cache: KVCache | None = None):
    """x: float[B, L, D] embeddings; positions: int32[B, L]; mask: bool[B, L]
    (True = real token) or None. Returns (fp32 logits float[B, L, V], cache)."""
    h_bld, cache = self.backbone(x_bld, positions_bl, mask_bl=mask_bl, cache=cache)
    return self.logits(h_bld), cache
