"""From ViT patch tokens to a few visual tokens in the LM's width.

FaceTrack-MM spends a few tokens per frame on the global view and a few on
the main character's face crop. This file holds the pieces between the
vision towers (``vit.py``) and the language model, independent of both:

* :func:`grid_pool` — average pooling of a square token grid to K = k*k
  tokens (adaptive when k does not divide the grid side);
* :class:`AttentionPool` — K learned queries cross-attending over the tokens;
* :class:`Projector` — 2-layer GELU MLP, ViT width -> LM width;
* :class:`VisualStream` — pool -> project for one stream (global frames or
  face crops), and for faces a ``mask`` that swaps a frame without a face
  for a learned "no face" embedding, so the crop of a masked frame carries
  no information;
* :class:`TimeEmbedding` — a learned ``float[T, D_lm]`` added to every
  visual token of frame t, so the LM knows frame order.

How the composition uses them (frames folded into the batch, F = B*T)::

    g = vit(frames_fhwc)                                  # float[F, N, Dv]
    g = global_stream(g).reshape(B, T, G, D_lm)          # G = global_tokens
    f = face_vit(faces_fsc)                               # float[F, M, Df]
    f = face_stream(f, mask=face_mask.reshape(F))         # float[F, K, D_lm]
    v = concat([g, f.reshape(B, T, K, D_lm)], axis=2)     # per frame: global, face
    v = time_embedding(v).reshape(B, T * (G + K), D_lm)
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from facetrack_jax import sharding
from facetrack_jax.models.vit import MAPHead

POOL_KINDS = ("avg", "attn")


def _square_side(n: int, what: str) -> int:
  side = math.isqrt(n)
  if n < 1 or side * side != n:
    raise ValueError(f"{what} must be a positive square (1, 4, 9, 16, ...), got {n}")
  return side


def _adaptive_avg_matrix(n_out: int, n_in: int) -> np.ndarray:
  """``float[n_out, n_in]``: row i averages inputs [floor(i*n/k), ceil((i+1)*n/k))
  — torch's ``AdaptiveAvgPool`` bins; equal blocks when n_out divides n_in."""
  w = np.zeros((n_out, n_in), np.float32)
  for i in range(n_out):
    lo, hi = (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)
    w[i, lo:hi] = 1.0 / (hi - lo)
  return w


def grid_pool(x_bnd: jax.Array, num_tokens: int) -> jax.Array:
  """Average-pools the square token grid ``float[B, N, D]`` (N = g*g, row
  major) to ``float[B, K, D]`` (K = k*k, k <= g, row major)."""
  g = _square_side(x_bnd.shape[1], f"grid_pool: the number of tokens N (shape {x_bnd.shape})")
  k = _square_side(num_tokens, "grid_pool: num_tokens")
  if k > g:
    raise ValueError(f"grid_pool: cannot pool a {g}x{g} grid up to {k}x{k} tokens")
  b, _, d = x_bnd.shape
  pool_ig = jnp.asarray(_adaptive_avg_matrix(k, g), x_bnd.dtype)
  x_bhwd = x_bnd.reshape(b, g, g, d)
  # Separable average: rows (i <- h) then columns (j <- w).
  y_bijd = jnp.einsum("ih,bhwd,jw->bijd", pool_ig, x_bhwd, pool_ig)
  return sharding.constrain(y_bijd.reshape(b, k * k, d), ("batch", "length", "act_embed"))


class AttentionPool(nnx.Module):
  """``float[B, N, D] -> float[B, K, D]``: K learned queries cross-attend over
  the tokens (multi-head), then ``y += mlp(ln(y))`` — a K-query MAP head."""

  def __init__(self, num_tokens: int, vit_cfg: ml_collections.ConfigDict, *,
               dtype, param_dtype, rngs: nnx.Rngs, attention: str = "auto"):
    self.map = MAPHead(vit_cfg.width, vit_cfg.num_heads, vit_cfg.mlp_dim, vit_cfg.layernorm_eps,
                       num_queries=num_tokens, dtype=dtype, param_dtype=param_dtype, rngs=rngs,
                       attention=attention)

  def __call__(self, x_bnd: jax.Array) -> jax.Array:
    return sharding.constrain(self.map(x_bnd), ("batch", "length", "act_embed"))


class Projector(nnx.Module):
  """``float[B, K, D_in] -> float[B, K, D_out]``: fc1 -> GELU -> fc2."""

  def __init__(self, in_width: int, hidden: int, out_width: int, *, dtype,
               param_dtype, rngs: nnx.Rngs):
    init = nnx.initializers.xavier_uniform()
    self.fc1 = nnx.Linear(
        in_width, hidden, dtype=dtype, param_dtype=param_dtype, rngs=rngs,
        kernel_init=nnx.with_partitioning(init, ("embed", "mlp")),
        bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), ("mlp",)))
    self.fc2 = nnx.Linear(
        hidden, out_width, dtype=dtype, param_dtype=param_dtype, rngs=rngs,
        kernel_init=nnx.with_partitioning(init, ("mlp", "embed")),
        bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), ("embed",)))

  def __call__(self, x_bkd: jax.Array) -> jax.Array:
    h_bkf = sharding.constrain(self.fc1(x_bkd), ("batch", "length", "act_mlp"))
    y_bke = self.fc2(jax.nn.gelu(h_bkf, approximate=True))
    return sharding.constrain(y_bke, ("batch", "length", "act_embed"))


class VisualStream(nnx.Module):
  """One visual stream into the LM: ``float[B, N, D_vit] -> float[B, K, D_lm]``.

  ``kind``: "avg" (:func:`grid_pool`, no parameters) or "attn"
  (:class:`AttentionPool`). ``masked=True`` (the face stream) adds a learned
  "no face" embedding ``float[K, D_lm]``; ``__call__(x, mask)`` then returns
  it for every frame whose ``mask`` (``float[B]`` or ``bool[B]``) is 0, so
  neither the values nor the gradients of those frames depend on their crop.
  """

  def __init__(self, vit_cfg: ml_collections.ConfigDict, *, kind: str, num_tokens: int,
               lm_width: int, projector_hidden: int, masked: bool = False,
               dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs,
               attention: str = "auto"):
    if kind not in POOL_KINDS:
      raise ValueError(f"VisualStream: pool kind must be one of {POOL_KINDS}, got {kind!r}")
    _square_side(num_tokens, "VisualStream: num_tokens")
    dtype, param_dtype = jnp.dtype(dtype), jnp.dtype(param_dtype)
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.kind, self.num_tokens, self.dtype = kind, num_tokens, dtype
    self.pool = (AttentionPool(num_tokens, vit_cfg, attention=attention, **kw)
                 if kind == "attn" else None)
    self.proj = Projector(vit_cfg.width, projector_hidden, lm_width, **kw)
    self.no_face = (nnx.Param(nnx.initializers.normal(0.02)(rngs.params(), (num_tokens, lm_width),
                                                            param_dtype),
                              out_sharding=("queries", "embed"))
                    if masked else None)

  def __call__(self, x_bnd: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    if x_bnd.ndim != 3:
      raise ValueError(f"VisualStream: tokens must be float[B, N, D], got shape {x_bnd.shape}")
    y_bkd = grid_pool(x_bnd, self.num_tokens) if self.pool is None else self.pool(x_bnd)
    y_bke = self.proj(y_bkd.astype(self.dtype))
    if self.no_face is None:
      if mask is not None:
        raise ValueError("VisualStream: got a mask, but this stream was built with masked=False")
      return y_bke
    if mask is None:
      raise ValueError("VisualStream: this masked stream needs mask float[B] (1 = face present)")
    if mask.shape != x_bnd.shape[:1]:
      raise ValueError(f"VisualStream: mask must have shape {x_bnd.shape[:1]}, got {mask.shape}")
    keep_b11 = (mask > 0)[:, None, None]
    return jnp.where(keep_b11, y_bke, self.no_face[...].astype(y_bke.dtype)[None])


class TimeEmbedding(nnx.Module):
  """Adds a learned embedding of frame t to every token of frame t:
  ``float[B, T, K, D] -> float[B, T, K, D]`` (T <= num_frames)."""

  def __init__(self, num_frames: int, width: int, *, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    self.table = nnx.Param(
        nnx.initializers.normal(0.02)(rngs.params(), (num_frames, width), jnp.dtype(param_dtype)),
        out_sharding=("positions", "embed"))

  def __call__(self, x_btkd: jax.Array) -> jax.Array:
    num_frames, width = self.table.shape
    if x_btkd.ndim != 4 or x_btkd.shape[1] > num_frames or x_btkd.shape[-1] != width:
      raise ValueError(f"TimeEmbedding: tokens must be float[B, T<={num_frames}, K, {width}], "
                       f"got shape {x_btkd.shape}")
    t = x_btkd.shape[1]
    return x_btkd + self.table[:t].astype(x_btkd.dtype)[None, :, None, :]
