"""Analytic FLOP counts of FaceTrack-MM (a multiply-add = 2 FLOPs).

Matmul FLOPs only (norms, softmax, GELU, the optimizer: < 1 % here). Per
piece, forward, one example of T frames and L tokens:

ViT on one image, N = (H/P)² patches, width D, MLP width M::

    2·N·3P²·D                         patch embedding
    + depth · (8·N·D²                 q, k, v, out projections
               + 4·N²·D               scores q·kᵀ and probs·v
               + 4·N·D·M)             MLP

Attention pool (K probes over N tokens): 4·K·D² (q, out) + 4·N·D² (k, v)
+ 4·K·N·D + 4·K·D·M.  Grid pool g×g -> k×k: 2·D·(k·g² + k²·g).
Projector: 2·K·(D_vit·H_p + H_p·D_lm).

LM on L tokens, width D, H heads (KVH key/value heads) of Dh, MLP F, vocab V::

    depth · (2·L·D·Dh·(2H + 2KVH)     q, o and k, v projections
             + 4·L²·H·Dh              scores and weighted values (full L×L:
                                      the causal mask is applied, not skipped)
             + 6·L·D·F)               SwiGLU gate, up, down
    + 2·L·D·V                         logits

Train step = 3 × forward (backward = grads w.r.t. activations + weights):
for the matmul part this is the familiar 6 × params touched per token ×
tokens, plus the attention terms. The only backward matmul not computed is
the patch embedding's gradient w.r.t. the pixels (counted anyway; < 0.2 %).
"""

from __future__ import annotations


def vit_forward(cfg, image_size: int) -> float:
  """One image through ``config.model.vit``-like ``cfg`` at ``image_size``."""
  n = (image_size // cfg.patch_size) ** 2
  d, m = cfg.width, cfg.mlp_dim
  patch = 2 * n * 3 * cfg.patch_size ** 2 * d
  layer = 8 * n * d * d + 4 * n * n * d + 4 * n * d * m
  return patch + cfg.depth * layer


def stream_forward(vit_cfg, image_size: int, kind: str, num_tokens: int,
                   projector_hidden: int, lm_width: int) -> float:
  """Pool + projector of one image's tokens (``VisualStream``)."""
  n = (image_size // vit_cfg.patch_size) ** 2
  d, m, k = vit_cfg.width, vit_cfg.mlp_dim, num_tokens
  if kind == "attn":
    pool = 4 * k * d * d + 4 * n * d * d + 4 * k * n * d + 4 * k * d * m
  else:
    g, kk = int(round(n ** 0.5)), int(round(k ** 0.5))
    pool = 2 * d * (kk * g * g + kk * kk * g)
  return pool + 2 * k * (d * projector_hidden + projector_hidden * lm_width)


def lm_forward(cfg, length: int) -> float:
  """One sequence of ``length`` tokens through ``config.model.lm``."""
  d, h, kvh, dh, f = cfg.width, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.mlp_dim
  layer = (2 * length * d * dh * (2 * h + 2 * kvh) + 4 * length * length * h * dh
           + 6 * length * d * f)
  return cfg.depth * layer + 2 * length * d * cfg.vocab_size


def model_forward_parts(model_cfg, length: int) -> dict[str, float]:
  """Forward FLOPs of one example, by piece."""
  m, c = model_cfg, model_cfg.compressor
  t = m.num_frames
  parts = {
      "vit": t * vit_forward(m.vit, m.frame_size),
      "global_stream": t * stream_forward(m.vit, m.frame_size, "avg", c.global_tokens,
                                          c.projector_hidden, m.lm.width),
      "lm": lm_forward(m.lm, length),
  }
  if c.face_tokens > 0:
    face_cfg = m.vit if m.shared_towers else m.face_vit
    parts["face_vit"] = t * vit_forward(face_cfg, m.face_size)
    parts["face_stream"] = t * stream_forward(face_cfg, m.face_size, c.face_pool,
                                              c.face_tokens, c.projector_hidden, m.lm.width)
  return parts


def train_step(model_cfg, batch: int, length: int) -> dict[str, float]:
  """Train-step FLOPs (3 × forward) of a batch, by piece, and ``"total"``."""
  parts = {k: 3 * batch * v for k, v in model_forward_parts(model_cfg, length).items()}
  parts["total"] = sum(parts.values())
  return parts


def _per_token(lm_cfg) -> float:
  """Matmul FLOPs of one token through the LM's projections and head."""
  d, h, kvh, dh, f = (lm_cfg.width, lm_cfg.num_heads, lm_cfg.num_kv_heads, lm_cfg.head_dim,
                      lm_cfg.mlp_dim)
  return lm_cfg.depth * (2 * d * dh * (2 * h + 2 * kvh) + 6 * d * f) + 2 * d * lm_cfg.vocab_size


def decode_step(lm_cfg, batch: int, cache_len: int) -> float:
  """One new token per row attending to a cache of ``cache_len`` slots."""
  attend = lm_cfg.depth * 4 * cache_len * lm_cfg.num_heads * lm_cfg.head_dim
  return batch * (_per_token(lm_cfg) + attend)


def decode_forward(lm_cfg, batch: int, prompt_len: int, new_tokens: int) -> float:
  """Matmul FLOPs of KV-cache generation: the prompt's prefill plus
  ``new_tokens - 1`` single-token steps, each attending to a cache of
  ``prompt_len + new_tokens`` slots (as :mod:`facetrack_jax.generate` does)."""
  cache = prompt_len + new_tokens
  h, dh = lm_cfg.num_heads, lm_cfg.head_dim
  prefill = batch * (prompt_len * _per_token(lm_cfg) + lm_cfg.depth * 4 * prompt_len * cache * h * dh)
  return prefill + (new_tokens - 1) * decode_step(lm_cfg, batch, cache)
