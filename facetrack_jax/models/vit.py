"""SigLIP-compatible Vision Transformer in Flax NNX (big_vision style).

One image in, its patch tokens out::

    images float[B, H, W, 3] in [-1, 1]          (see :func:`preprocess`)
      -> conv patch embedding (P x P, stride P)  float[B, N, D], N = (H/P)*(W/P)
      -> + learned position embedding            (resampled if the grid differs)
      -> depth x pre-LN block:  x += MHA(LN(x));  x += MLP(LN(x))
      -> final LayerNorm ("post_layernorm")      float[B, N, D]

With ``cfg.use_head`` the model also owns SigLIP's MAP head (a learned probe
attending over the tokens, then LN + MLP with a residual): ``vit.pool(tokens)``
gives the pooled ``float[B, D]`` image embedding. There is no class token.

Video frames are folded into the batch by the caller (``[B*T, H, W, 3]``).
The layout matches HF ``SiglipVisionModel`` one to one, so
``facetrack_jax.convert.siglip`` imports its weights with no tensor left over.

Config (``config.model.vit``): ``image_size`` (the resolution the position
grid was made for), ``patch_size``, ``width``, ``depth``, ``num_heads``,
``mlp_dim``, ``layernorm_eps``, ``use_head`` and, optionally,
``posemb_resample`` ("bilinear", the default, or "bicubic" as HF uses).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx
from jax.ad_checkpoint import checkpoint_name

from facetrack_jax import sharding
from facetrack_jax.models import attention as attention_paths
from facetrack_jax.models import layers

_zeros = nnx.initializers.zeros_init()
_ones = nnx.initializers.ones_init()


def preprocess(images_uint8: jax.Array, dtype=jnp.float32) -> jax.Array:
  """``uint8[..., H, W, 3]`` in [0, 255] -> ``float[..., H, W, 3]`` in [-1, 1]
  (SigLIP's normalisation: mean 0.5, std 0.5 per channel)."""
  if images_uint8.dtype != jnp.uint8:
    raise TypeError(f"preprocess: images must be uint8, got {images_uint8.dtype}")
  return images_uint8.astype(dtype) / 127.5 - 1.0


# ---------------------------------------------------------------------------
# Position-embedding resampling.
# ---------------------------------------------------------------------------

def _interp_matrix(n_out: int, n_in: int, method: str) -> np.ndarray:
  """``float[n_out, n_in]``: 1-D resampling as a matrix, with torch's
  ``F.interpolate(..., align_corners=False)`` semantics (half-pixel centres,
  no antialiasing; bicubic uses Keys' kernel with a = -0.75)."""
  w = np.zeros((n_out, n_in), np.float64)
  for i in range(n_out):
    src = (i + 0.5) * n_in / n_out - 0.5
    if method == "bilinear":
      src = max(src, 0.0)
      i0 = int(np.floor(src))
      t = src - i0
      taps = [(i0, 1.0 - t), (min(i0 + 1, n_in - 1), t)]
    elif method == "bicubic":
      a = -0.75
      i0 = int(np.floor(src))
      t = src - i0
      near = lambda x: ((a + 2) * x - (a + 3)) * x * x + 1       # |x| <= 1
      far = lambda x: ((a * x - 5 * a) * x + 8 * a) * x - 4 * a  # 1 < |x| < 2
      taps = [(min(max(i0 + off, 0), n_in - 1), wt)   # edge taps clamp to the border
              for off, wt in zip((-1, 0, 1, 2), (far(t + 1), near(t), near(1 - t), far(2 - t)))]
    else:
      raise ValueError(f"posemb_resample must be 'bilinear' or 'bicubic', got {method!r}")
    for j, wt in taps:
      w[i, j] += wt
  return w.astype(np.float32)


def resample_posemb(posemb_nd: jax.Array, old_grid: tuple[int, int],
                    new_grid: tuple[int, int], method: str = "bilinear") -> jax.Array:
  """``float[gh*gw, D]`` position embeddings -> ``float[nh*nw, D]``, resampled
  over the 2-D grid (as big_vision's ``resample_posemb`` / HF's
  ``interpolate_pos_encoding`` do). A no-op when the grids agree."""
  if tuple(old_grid) == tuple(new_grid):
    return posemb_nd
  (gh, gw), (nh, nw) = old_grid, new_grid
  grid_hwd = posemb_nd.reshape(gh, gw, -1)
  rows_ih = jnp.asarray(_interp_matrix(nh, gh, method), posemb_nd.dtype)
  cols_jw = jnp.asarray(_interp_matrix(nw, gw, method), posemb_nd.dtype)
  # Separable resampling: rows then columns. i, j: new grid; h, w: old grid.
  new_ijd = jnp.einsum("ih,hwd,jw->ijd", rows_ih, grid_hwd, cols_jw)
  return new_ijd.reshape(nh * nw, -1)


# ---------------------------------------------------------------------------
# Building blocks (shared with the attention-pooling face compressor).
# ---------------------------------------------------------------------------

class MLP(nnx.Module):
  """``float[B, N, D] -> float[B, N, D]``: fc1 -> GELU (tanh) -> fc2."""

  def __init__(self, width: int, mlp_dim: int, *, dtype, param_dtype, rngs: nnx.Rngs):
    init = nnx.initializers.xavier_uniform()
    self.fc1 = nnx.Linear(
        width, mlp_dim, dtype=dtype, param_dtype=param_dtype, rngs=rngs,
        kernel_init=nnx.with_partitioning(init, ("embed", "mlp")),
        bias_init=nnx.with_partitioning(_zeros, ("mlp",)))
    self.fc2 = nnx.Linear(
        mlp_dim, width, dtype=dtype, param_dtype=param_dtype, rngs=rngs,
        kernel_init=nnx.with_partitioning(init, ("mlp", "embed")),
        bias_init=nnx.with_partitioning(_zeros, ("embed",)))

  def __call__(self, x_bnd: jax.Array) -> jax.Array:
    h_bnf = self.fc1(x_bnd)
    h_bnf = sharding.constrain(h_bnf, ("batch", "length", "act_mlp"))
    h_bnf = jax.nn.gelu(h_bnf, approximate=True)  # HF "gelu_pytorch_tanh"
    return checkpoint_name(self.fc2(h_bnf), layers.MLP_OUT)


class Attention(nnx.Module):
  """Multi-head dot-product attention; q, k, v and out projections with bias.

  ``__call__(x_bqd, y_bsd=None) -> float[B, Q, D]``: queries from ``x``,
  keys and values from ``y`` (``y = x`` for self-attention).
  """

  def __init__(self, width: int, num_heads: int, *, dtype, param_dtype,
               rngs: nnx.Rngs, attention: str = "auto"):
    if width % num_heads:
      raise ValueError(f"Attention: width {width} is not divisible by num_heads {num_heads}")
    head_dim = width // num_heads
    self.scale = head_dim ** -0.5
    self.attention, self.dtype = attention_paths.check(attention), jnp.dtype(dtype)

    def proj(eq, kernel_shape, bias_shape, kernel_axes, bias_axes, in_axis, out_axis):
      init = nnx.initializers.xavier_uniform(in_axis=in_axis, out_axis=out_axis)
      return nnx.Einsum(
          eq, kernel_shape, bias_shape, dtype=dtype, param_dtype=param_dtype, rngs=rngs,
          kernel_init=nnx.with_partitioning(init, kernel_axes),
          bias_init=nnx.with_partitioning(_zeros, bias_axes))

    # q, k, v: each token's width D split into H heads of E = D / H.
    qkv = lambda: proj("btd,dhe->bthe", (width, num_heads, head_dim), (num_heads, head_dim),
                       ("embed", "heads", "head_dim"), ("heads", "head_dim"), 0, (1, 2))
    self.q, self.k, self.v = qkv(), qkv(), qkv()
    # out: the heads' outputs concatenated and mixed back to width D.
    self.out = proj("bthe,hed->btd", (num_heads, head_dim, width), (width,),
                    ("heads", "head_dim", "embed"), ("embed",), (0, 1), 2)

  def __call__(self, x_bqd: jax.Array, y_bsd: jax.Array | None = None) -> jax.Array:
    y_bsd = x_bqd if y_bsd is None else y_bsd
    heads = ("batch", "length", "act_heads", None)
    q_bqhe = sharding.constrain(checkpoint_name(self.q(x_bqd), layers.QKV), heads)
    k_bshe = sharding.constrain(checkpoint_name(self.k(y_bsd), layers.QKV), heads)
    v_bshe = sharding.constrain(checkpoint_name(self.v(y_bsd), layers.QKV), heads)
    impl = attention_paths.resolve(self.attention, self.dtype)
    if impl != "einsum":    # jax.nn.dot_product_attention (no mask: every token sees all)
      out_bqhe = attention_paths.fused(q_bqhe, k_bshe, v_bshe, impl=impl, scale=self.scale)
      return self._out(out_bqhe)
    # Logits: per head h, query q against source s, summed over head_dim e.
    logits_bhqs = jnp.einsum("bqhe,bshe->bhqs", q_bqhe * self.scale, k_bshe)
    probs_bhqs = jax.nn.softmax(logits_bhqs.astype(jnp.float32), axis=-1)
    # Weighted sum of values over sources s.
    out_bqhe = jnp.einsum("bhqs,bshe->bqhe", probs_bhqs.astype(v_bshe.dtype), v_bshe)
    return self._out(out_bqhe)

  def _out(self, out_bqhe: jax.Array) -> jax.Array:
    """float[B, Q, H, E] -> the output projection float[B, Q, D]."""
    heads = ("batch", "length", "act_heads", None)
    out_bqhe = checkpoint_name(sharding.constrain(out_bqhe, heads), layers.ATTN_OUT)
    return checkpoint_name(self.out(out_bqhe), layers.OUT_PROJ)


def _layernorm(width, eps, *, dtype, param_dtype, rngs):
  return nnx.LayerNorm(
      width, epsilon=eps, dtype=dtype, param_dtype=param_dtype, rngs=rngs,
      use_fast_variance=False,  # mean((x - mean)^2), as torch
      scale_init=nnx.with_partitioning(_ones, ("norm",)),
      bias_init=nnx.with_partitioning(_zeros, ("norm",)))


class Block(nnx.Module):
  """Pre-LN encoder block: ``x += attn(ln1(x)); x += mlp(ln2(x))``."""

  def __init__(self, cfg: ml_collections.ConfigDict, *, dtype, param_dtype, rngs,
               attention: str = "auto"):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.ln1 = _layernorm(cfg.width, cfg.layernorm_eps, **kw)
    self.attn = Attention(cfg.width, cfg.num_heads, attention=attention, **kw)
    self.ln2 = _layernorm(cfg.width, cfg.layernorm_eps, **kw)
    self.mlp = MLP(cfg.width, cfg.mlp_dim, **kw)

  def __call__(self, x_bnd: jax.Array) -> jax.Array:
    x_bnd = x_bnd + self.attn(self.ln1(x_bnd))
    x_bnd = sharding.constrain(x_bnd, ("batch", "length", "act_embed"))
    x_bnd = x_bnd + self.mlp(self.ln2(x_bnd))
    return sharding.constrain(x_bnd, ("batch", "length", "act_embed"))


class MAPHead(nnx.Module):
  """Multihead attention pooling: ``float[B, N, D] -> float[B, K, D]``.

  K learned probes (queries) attend over the N tokens; then
  ``y += mlp(ln(y))``. With K = 1 this is SigLIP's ``head``.
  """

  def __init__(self, width: int, num_heads: int, mlp_dim: int, eps: float, *,
               num_queries: int = 1, dtype, param_dtype, rngs: nnx.Rngs,
               attention: str = "auto"):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.dtype = dtype
    self.probe = nnx.Param(
        nnx.initializers.xavier_uniform()(rngs.params(), (num_queries, width), param_dtype),
        out_sharding=("queries", "embed"))
    self.attn = Attention(width, num_heads, attention=attention, **kw)
    self.ln = _layernorm(width, eps, **kw)
    self.mlp = MLP(width, mlp_dim, **kw)

  def __call__(self, x_bnd: jax.Array) -> jax.Array:
    probe_bkd = jnp.broadcast_to(self.probe[...].astype(self.dtype),
                                 (x_bnd.shape[0], *self.probe.shape))
    y_bkd = self.attn(probe_bkd, x_bnd)
    return y_bkd + self.mlp(self.ln(y_bkd))


# ---------------------------------------------------------------------------
# The ViT.
# ---------------------------------------------------------------------------

class ViT(nnx.Module):
  """SigLIP vision tower: ``float[B, H, W, 3]`` in [-1, 1] -> ``float[B, N, D]``.

  ``__call__`` returns the patch tokens after the final LayerNorm, in
  row-major grid order (N = (H//P) * (W//P)); any H, W >= P work (a
  remainder is dropped as HF's VALID conv does; the position grid is
  resampled when the grid differs). With ``cfg.use_head``,
  ``pool(tokens)`` gives SigLIP's pooled embedding ``float[B, D]``.
  """

  def __init__(self, cfg: ml_collections.ConfigDict, *, dtype=jnp.float32,
               param_dtype=jnp.float32, rngs: nnx.Rngs, scan_layers: bool = False,
               remat: str = "none", attention: str = "auto"):
    if cfg.image_size < cfg.patch_size:
      raise ValueError(f"ViT: image_size {cfg.image_size} is smaller than "
                       f"patch_size {cfg.patch_size}")
    dtype, param_dtype = jnp.dtype(dtype), jnp.dtype(param_dtype)
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.patch_size = cfg.patch_size
    # Side of the position grid. Like HF/big_vision, a size that is not a
    # multiple of the patch drops the remainder (so400m/14 @ 384 -> 27x27).
    self.grid = cfg.image_size // cfg.patch_size
    self.posemb_resample = cfg.get("posemb_resample", "bilinear")
    if self.posemb_resample not in ("bilinear", "bicubic"):
      raise ValueError("ViT: cfg.posemb_resample must be 'bilinear' or 'bicubic', "
                       f"got {self.posemb_resample!r}")
    self.dtype = dtype
    self.scan_layers, self.remat = bool(scan_layers), layers.check_remat(remat)
    p, d = cfg.patch_size, cfg.width

    # A P x P conv with stride P = one dense layer applied to each patch.
    self.patch_embed = nnx.Conv(
        3, d, kernel_size=(p, p), strides=(p, p), padding="VALID", **kw,
        kernel_init=nnx.with_partitioning(nnx.initializers.lecun_normal(),
                                          ("patch", "patch", "patch", "embed")),
        bias_init=nnx.with_partitioning(_zeros, ("embed",)))
    self.pos_embed = nnx.Param(
        nnx.initializers.normal(d ** -0.5)(rngs.params(), (self.grid ** 2, d), param_dtype),
        out_sharding=("positions", "embed"))
    self.blocks = layers.make_blocks(
        lambda r: Block(cfg, dtype=dtype, param_dtype=param_dtype, rngs=r, attention=attention),
        cfg.depth, rngs, scan=self.scan_layers)
    self.post_ln = _layernorm(d, cfg.layernorm_eps, **kw)
    self.head = (MAPHead(d, cfg.num_heads, cfg.mlp_dim, cfg.layernorm_eps, attention=attention,
                         **kw) if cfg.use_head else None)

  def __call__(self, images_bhwc: jax.Array) -> jax.Array:
    if images_bhwc.ndim != 4 or images_bhwc.shape[-1] != 3:
      raise ValueError(f"ViT: images must be float[B, H, W, 3], got shape {images_bhwc.shape}")
    if jnp.issubdtype(images_bhwc.dtype, jnp.integer):
      raise TypeError("ViT: images must be floats in [-1, 1]; convert uint8 with preprocess()")
    _, h, w, _ = images_bhwc.shape
    if h < self.patch_size or w < self.patch_size:
      raise ValueError(f"ViT: image size {h}x{w} is smaller than patch size {self.patch_size}")

    x_bhwd = self.patch_embed(images_bhwc.astype(self.dtype))
    b, gh, gw, d = x_bhwd.shape
    x_bnd = x_bhwd.reshape(b, gh * gw, d)
    pos_nd = resample_posemb(self.pos_embed[...], (self.grid, self.grid), (gh, gw),
                             self.posemb_resample)
    x_bnd = x_bnd + pos_nd.astype(self.dtype)[None]
    x_bnd = sharding.constrain(x_bnd, ("batch", "length", "act_embed"))

    x_bnd = layers.apply_blocks(self.blocks, lambda block, x, i: block(x), x_bnd,
                                scan=self.scan_layers, remat=self.remat)
    return self.post_ln(x_bnd)

  def pool(self, tokens_bnd: jax.Array) -> jax.Array:
    """SigLIP's MAP-head embedding ``float[B, D]`` of ``__call__``'s tokens."""
    if self.head is None:
      raise ValueError("ViT.pool: this ViT has no head (cfg.use_head is False)")
    return self.head(tokens_bnd)[:, 0]
