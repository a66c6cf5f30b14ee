"""Autoregressive generation from prompt embeddings with a KV cache.

    tokens_bn = generate(lm, x_prompt_bld, prompt_mask_bl, max_new_tokens=64, eos_id=2)

Prompts of different lengths are **left-padded** (mask False on the left) so
every row's last prompt token sits in the last column; positions are
``cumsum(mask) - 1``, so a row's padding does not shift its positions. The
prompt is prefilled once, then one jitted ``lax.while_loop`` decodes a token
per step over the cache; a row that emitted ``eos_id`` emits ``pad_id`` from
then on, and the loop stops early once every row is done. Greedy for
``temperature == 0``, else temperature + nucleus (top-p) sampling.

Works under a mesh: call it inside ``sharding.use_mesh(mesh)`` with the LM's
parameters sharded; the batch is constrained to ("data", "fsdp").
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from facetrack_jax import sharding
from facetrack_jax.models.lm import LM


def left_align(x_bl, mask_bl):
  """Moves each row's valid entries to the right end, keeping their order:
  right-padded (or any-padded) prompts -> left-padded ones.

  x: [B, L, ...] (tokens or embeddings); mask: bool[B, L]. Returns (x, mask).
  """
  mask_bl = jnp.asarray(mask_bl, bool)
  order_bl = jnp.argsort(mask_bl, axis=1, stable=True)     # pads first, then valid in order
  take = order_bl.reshape(order_bl.shape + (1,) * (x_bl.ndim - 2))
  return (jnp.take_along_axis(jnp.asarray(x_bl), take, axis=1),
          jnp.take_along_axis(mask_bl, order_bl, axis=1))


def _check_left_padded(mask_bl) -> None:
  """Concrete masks only (a traced one cannot be inspected)."""
  if isinstance(mask_bl, jax.core.Tracer) or (
      isinstance(mask_bl, jax.Array) and not mask_bl.is_fully_addressable):
    return
  m = np.asarray(mask_bl, bool)
  if not m.any(axis=1).all():
    raise ValueError(f"generate: prompt_mask_bl rows {np.flatnonzero(~m.any(1)).tolist()} "
                     "have no valid token")
  if (m[:, :-1] & ~m[:, 1:]).any():
    raise ValueError("generate: prompts must be left-padded (mask False only on the left); "
                     "use left_align(x, mask) on right-padded prompts")


def _pick(logits_bv, rng, temperature, top_p):
  """Next token per row: argmax if ``temperature == 0``, else a sample from
  the top-p set of softmax(logits / temperature). (``temperature`` and
  ``top_p`` are traced scalars: one compilation serves every setting.)"""

  def sample(logits_bv):
    logits_bv = logits_bv / temperature
    order_bv = jnp.argsort(-logits_bv, axis=-1)
    sorted_bv = jnp.take_along_axis(logits_bv, order_bv, axis=-1)
    probs_bv = jax.nn.softmax(sorted_bv, axis=-1)
    # Keep a token if the mass strictly before it is < top_p (the first always stays).
    keep_bv = (jnp.cumsum(probs_bv, axis=-1) - probs_bv < top_p).at[:, 0].set(True)
    choice_b = jax.random.categorical(rng, jnp.where(keep_bv, sorted_bv, -jnp.inf), axis=-1)
    return jnp.take_along_axis(order_bv, choice_b[:, None], axis=-1)[:, 0]

  greedy = lambda logits_bv: jnp.argmax(logits_bv, axis=-1)
  return jax.lax.cond(temperature == 0, greedy, sample, logits_bv).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("graphdef", "max_new_tokens"))
def _generate(graphdef, state, x_prompt_bld, prompt_mask_bl, rng, temperature, top_p,
              eos_id, pad_id, *, max_new_tokens: int):
  lm = nnx.merge(graphdef, state)
  b, p, _ = x_prompt_bld.shape
  mask_bl = prompt_mask_bl.astype(bool)
  x_prompt_bld = sharding.constrain(x_prompt_bld, ("batch", "length", "act_embed"))
  positions_bl = jnp.maximum(jnp.cumsum(mask_bl, axis=1) - 1, 0).astype(jnp.int32)

  cache = lm.init_cache(b, p + max_new_tokens)
  h_bld, cache = lm.backbone(x_prompt_bld, positions_bl, mask_bl=mask_bl, cache=cache)
  logits_b1v = lm.logits(h_bld[:, -1:])     # only the last column is needed (left padding)
  rng, step_rng = jax.random.split(rng)
  token_b = _pick(logits_b1v[:, 0], step_rng, temperature, top_p)
  out_bn = jnp.full((b, max_new_tokens), pad_id, jnp.int32).at[:, 0].set(token_b)
  out_bn = sharding.constrain(out_bn, ("batch", "length"))
  done_b = token_b == eos_id
  next_pos_b = jnp.sum(mask_bl, axis=1).astype(jnp.int32)

  def cond(carry):
    i, _, done_b, *_ = carry
    return (i < max_new_tokens) & ~jnp.all(done_b)

  def body(carry):
    i, out_bn, done_b, token_b, pos_b, cache, rng = carry
    step = nnx.merge(graphdef, state)
    x_b1d = step.embed(token_b[:, None])
    logits_b1v, cache = step(x_b1d, pos_b[:, None], cache=cache)
    rng, step_rng = jax.random.split(rng)
    token_b = _pick(logits_b1v[:, 0], step_rng, temperature, top_p)
    token_b = jnp.where(done_b, pad_id, token_b)
    out_bn = jax.lax.dynamic_update_slice(out_bn, token_b[:, None], (0, i))
    return i + 1, out_bn, done_b | (token_b == eos_id), token_b, pos_b + 1, cache, rng

  carry = (jnp.int32(1), out_bn, done_b, token_b, next_pos_b, cache, rng)
  return jax.lax.while_loop(cond, body, carry)[1]


def generate(lm: LM, x_prompt_bld: jax.Array, prompt_mask_bl: jax.Array, *,
             max_new_tokens: int, eos_id: int, pad_id: int = 0, rng=None,
             temperature: float = 0.0, top_p: float = 1.0) -> jax.Array:
  """Continues left-padded prompt embeddings.

  x_prompt_bld: float[B, P, D] (e.g. ``lm.embed(tokens)`` with visual tokens
  spliced in); prompt_mask_bl: bool[B, P], False on the left padding, every
  row with at least one True (right-padded prompts: see :func:`left_align`).
  Returns int32[B, max_new_tokens]: the new tokens, the first ``eos_id``
  included, ``pad_id`` after it.
  """
  if x_prompt_bld.ndim != 3 or prompt_mask_bl.shape != x_prompt_bld.shape[:2]:
    raise ValueError(f"generate: x_prompt_bld {x_prompt_bld.shape} and prompt_mask_bl "
                     f"{prompt_mask_bl.shape} must be [B, P, D] and [B, P]")
  if max_new_tokens < 1:
    raise ValueError(f"generate: max_new_tokens must be >= 1, got {max_new_tokens}")
  if temperature < 0 or not 0 < top_p <= 1:
    raise ValueError(f"generate: need temperature >= 0 and 0 < top_p <= 1, "
                     f"got temperature={temperature}, top_p={top_p}")
  if x_prompt_bld.shape[1] + max_new_tokens > lm.max_len:
    raise ValueError(f"generate: prompt length {x_prompt_bld.shape[1]} + max_new_tokens "
                     f"{max_new_tokens} exceeds the LM's max_len {lm.max_len}")
  _check_left_padded(prompt_mask_bl)
  if rng is None:
    if temperature > 0:
      raise ValueError("generate: rng is required when temperature > 0")
    rng = jax.random.key(0)
  elif not jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key):
    rng = jax.random.wrap_key_data(rng)        # a raw jax.random.PRNGKey
  graphdef, state = nnx.split(lm)
  return _generate(graphdef, state, x_prompt_bld, prompt_mask_bl, rng,
                   jnp.float32(temperature), jnp.float32(top_p), jnp.int32(eos_id),
                   jnp.int32(pad_id), max_new_tokens=int(max_new_tokens))


def generate_from_tokens(lm: LM, tokens_bl: jax.Array, mask_bl: jax.Array, **kwargs) -> jax.Array:
  """:func:`generate` for text-only prompts: tokens int32[B, P], left-padded,
  mask bool[B, P]. Keyword arguments as for :func:`generate`."""
  return generate(lm, lm.embed(jnp.asarray(tokens_bl)), jnp.asarray(mask_bl), **kwargs)
