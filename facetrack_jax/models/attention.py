"""Which attention kernel runs: the einsum reference or ``jax.nn.dot_product_attention``.

    impl = attention.resolve(config.model.attention, dtype)     # "einsum" | "xla" | "cudnn"
    out_btnh = attention.fused(q_btnh, k_bskh, v_bskh, impl=impl, is_causal=True)

``config.model.attention`` names the path (:data:`CHOICES`):

* ``"einsum"``: the models' own einsums, fp32 scores and probabilities kept
  (float[B, H, L, S]); the reference every other path is tested against.
* ``"dot_product"``: :func:`jax.nn.dot_product_attention`, with cuDNN's flash
  attention (``implementation="cudnn"``: scores never stored, the causal upper
  triangle skipped) on a GPU with bf16/fp16 compute, XLA's implementation
  elsewhere (the same math as the einsums: on CPU and TPU it buys nothing
  but parity).
* ``"xla"`` / ``"cudnn"``: that implementation of ``jax.nn.dot_product_attention``.
* ``"auto"`` (the default): ``dot_product`` on GPU/TPU; on CPU the einsums,
  which XLA's implementation does not beat there (``small`` config, two
  alternating runs on a loaded 2-core VM: train step 1.15×, prefill
  0.84–1.04×, decode per token 0.96–1.03× of the einsums' time;
  ``benchmarks/results/attention_cpu_timing*.md``); and the einsums for a
  one-token KV-cache decode step everywhere: they read the head-major cache in
  place, the fused kernel wants it [B, S, K, Dh] (a transpose of the whole
  cache per token), and batch-1 decoding on a GPU already reads the weights at
  0.81 of the bandwidth with them (``benchmarks/gpu_check.py`` measures both).

GQA: ``jax.nn.dot_product_attention`` takes K/V with fewer heads than Q. Its
XLA implementation reshapes the queries to [B, T, K, G, Dh] and ``vmap``s the
per-group attention over G with K/V unbatched, which batches into the
``dot_general``'s free dims: K/V are never repeated in memory. cuDNN takes
GQA natively. Query head ``k·G + g`` reads kv head ``k``, the models' layout.

Masks: a boolean ``mask`` broadcastable to [B, 1, T, S]; cuDNN turns it into
an additive bias that must span the full [T, S] (:func:`fused` broadcasts it
there). A query row with no allowed key gets a uniform average of the values
from the fused kernel and zeros from the einsums: callers zero the outputs at
pad queries (``q_valid``) so both paths agree everywhere.
"""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp

CHOICES = ("auto", "einsum", "dot_product", "xla", "cudnn")


def check(name: str) -> str:
  if name not in CHOICES:
    raise ValueError(f"config.model.attention={name!r} is not an attention path; "
                     f"choose one of {CHOICES}")
  return name


def resolve(name: str, dtype, *, decode: bool = False, platform: str | None = None) -> str:
  """``config.model.attention`` -> the path that runs: "einsum", "xla", "cudnn" or
  "cudnn_else_xla" (``dot_product`` / ``auto`` on a GPU: cuDNN, and XLA's
  implementation where cuDNN refuses the call, e.g. an unsupported head size or
  cuDNN version; an explicit ``cudnn`` raises instead).

  ``decode``: a one-token step over a KV cache; ``platform``: default
  ``jax.default_backend()`` (read at trace time).
  """
  check(name)
  platform = platform or jax.default_backend()
  half = jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
  if name == "auto":
    if decode or platform == "cpu":
      return "einsum"
    name = "dot_product"
  if name == "dot_product":
    return "cudnn_else_xla" if platform == "gpu" and half else "xla"
  if name == "cudnn" and not half:
    raise ValueError(f"config.model.attention='cudnn' needs bf16/fp16 compute, got {dtype}; "
                     "use 'dot_product' (cuDNN where it applies, XLA elsewhere)")
  return name


def fused(q_btnh: jax.Array, k_bskh: jax.Array, v_bskh: jax.Array, *, impl: str,
          is_causal: bool = False, mask: jax.Array | None = None,
          q_valid_bt: jax.Array | None = None, scale: float | None = None) -> jax.Array:
  """``jax.nn.dot_product_attention`` -> float[B, T, N, Dh].

  q: float[B, T, N, Dh]; k, v: float[B, S, K, Dh] (N a multiple of K);
  mask: bool broadcastable to [B, 1, T, S] (True = may attend) or None;
  is_causal: key slot <= query slot (T == S, both from slot 0);
  q_valid: bool[B, T] or None, outputs at invalid queries set to 0;
  scale: default Dh ** -0.5; impl: "xla", "cudnn" or "cudnn_else_xla".
  """
  if impl not in ("xla", "cudnn", "cudnn_else_xla"):
    raise ValueError(f"attention.fused: impl must be 'xla', 'cudnn' or 'cudnn_else_xla', "
                     f"got {impl!r}")
  out_btnh = None
  if impl != "xla":
    cudnn_mask = mask
    if mask is not None:     # cuDNN's bias spans [.., T, S]
      b, t, s = q_btnh.shape[0], q_btnh.shape[1], k_bskh.shape[1]
      cudnn_mask = jnp.broadcast_to(mask, (b, 1, t, s))
    try:   # jax checks shapes, layout and the cuDNN version here, at trace time
      out_btnh = jax.nn.dot_product_attention(q_btnh, k_bskh, v_bskh, mask=cudnn_mask,
                                              scale=scale, is_causal=is_causal,
                                              implementation="cudnn")
    except (ValueError, NotImplementedError, RuntimeError) as e:
      if impl == "cudnn":
        raise
      _warn_fallback(q_btnh.shape, k_bskh.shape, e)
  if out_btnh is None:
    out_btnh = jax.nn.dot_product_attention(q_btnh, k_bskh, v_bskh, mask=mask, scale=scale,
                                            is_causal=is_causal, implementation="xla")
  if q_valid_bt is not None:
    out_btnh = out_btnh * q_valid_bt[:, :, None, None].astype(out_btnh.dtype)
  return out_btnh


_warned: set[tuple] = set()


def _warn_fallback(q_shape, k_shape, error: Exception) -> None:
  """Says once per shape pair that cuDNN refused and XLA's kernel runs instead."""
  key = (tuple(q_shape), tuple(k_shape))
  if key not in _warned:
    _warned.add(key)
    logging.warning("attention: cuDNN refused q%s k%s (%s); XLA's dot_product_attention "
                    "runs instead (config.model.attention='cudnn' makes this an error)",
                    tuple(q_shape), tuple(k_shape), error)
