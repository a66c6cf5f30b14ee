"""A stack of identical blocks: unrolled or scanned, rematerialised by policy name.

    blocks = layers.make_blocks(lambda rngs: Block(cfg, rngs=rngs), depth, rngs, scan=True)
    x = layers.apply_blocks(blocks, lambda block, x, i: block(x), x, scan=True, remat="full")

Unrolled (``scan=False``): an ``nnx.List`` of ``depth`` blocks, parameters
``blocks.<i>.<name>``, applied by a Python loop — XLA compiles every layer.
Scanned (``scan=True``): one block whose parameters are stacked on a leading
axis of size ``depth`` with the logical name ``"layers"`` (``blocks.<name>``,
``float[depth, ...]``; ``sharding.RULES`` maps it), created by ``nnx.vmap``
and applied by one ``lax.scan`` — XLA compiles one layer, the way MaxText and
big_vision stack theirs. :func:`stack_layer_arrays` turns per-layer
checkpoint tensors into the stacked layout (the importers use it).

Remat (``jax.checkpoint`` around each block) trades recomputation in the
backward pass for activation memory. Policies by name (:data:`REMAT_POLICIES`):
``none`` (no remat: every intermediate kept), ``full`` (keep only each
block's input), ``dots_saveable`` / ``dots_with_no_batch_dims_saveable``
(keep matmul outputs), and name-based ones that keep the activations the
blocks tag with :func:`jax.ad_checkpoint.checkpoint_name`:
``save_qkv_proj`` (the q/k/v projections), ``save_dot_except_mlp``
(q/k/v, attention output and its projection — MaxText's policy of that
name), ``save_out_proj`` (the block's two output projections).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

LAYERS_AXIS = "layers"
_cp = jax.checkpoint_policies

# checkpoint_name tags the blocks put on their activations.
QKV = "qkv_proj"          # the q, k, v projections
ATTN_OUT = "attn_out"     # attention's weighted values, before the output projection
OUT_PROJ = "out_proj"     # attention's output projection
MLP_OUT = "mlp_out"       # the MLP's output projection

REMAT_POLICIES: dict[str, Callable | None] = {
    "none": None,
    "full": _cp.nothing_saveable,
    "dots_saveable": _cp.dots_saveable,
    "dots_with_no_batch_dims_saveable": _cp.dots_with_no_batch_dims_saveable,
    "save_qkv_proj": _cp.save_only_these_names(QKV),
    "save_dot_except_mlp": _cp.save_only_these_names(QKV, ATTN_OUT, OUT_PROJ),
    "save_out_proj": _cp.save_only_these_names(OUT_PROJ, MLP_OUT),
}


def check_remat(name: str) -> str:
  if name not in REMAT_POLICIES:
    raise ValueError(f"config.model.remat={name!r} is not a remat policy; "
                     f"choose one of {sorted(REMAT_POLICIES)}")
  return name


def make_blocks(make_block: Callable[[nnx.Rngs], nnx.Module], depth: int,
                rngs: nnx.Rngs, *, scan: bool):
  """``depth`` blocks made by ``make_block(rngs)``: an ``nnx.List`` or, with
  ``scan``, one block with every parameter stacked on a leading "layers" axis."""
  if not scan:
    return nnx.List([make_block(rngs) for _ in range(depth)])

  @nnx.split_rngs(splits=depth)
  @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata={nnx.PARTITION_NAME: LAYERS_AXIS})
  def stacked(rngs):
    return make_block(rngs)

  return stacked(rngs)


def num_layers(blocks) -> int:
  """Depth of a stack made by :func:`make_blocks`."""
  if isinstance(blocks, nnx.List):
    return len(blocks)
  return jax.tree.leaves(nnx.state(blocks, nnx.Param))[0].shape[0]


def apply_blocks(blocks, body: Callable[[nnx.Module, Any, Any], Any], carry, *,
                 scan: bool, remat: str = "none"):
  """``carry = body(block, carry, i)`` for each layer i in order.

  ``i`` is a Python int (unrolled) or an ``int32[]`` (scanned). ``remat``
  names the policy of :data:`REMAT_POLICIES` (``"none"``: no remat).
  """
  policy = REMAT_POLICIES[check_remat(remat)]
  if remat != "none":
    # In a scan, CSE across iterations cannot happen, so prevent_cse is not needed.
    body = nnx.remat(body, policy=policy, prevent_cse=not scan,
                     static_argnums=() if scan else (2,))
  if not scan:
    for i, block in enumerate(blocks):
      carry = body(block, carry, i)
    return carry

  # A plain lax.scan over the stacked state (each step merges one layer's
  # slice into a block): unlike nnx.scan it also runs inside a while_loop
  # body that closes over the weights (generate's decode loop).
  graphdef, state = nnx.split(blocks)

  def step(carry, xs):
    layer_state, i = xs
    return body(nnx.merge(graphdef, layer_state), carry, i), None

  xs = (state, jnp.arange(num_layers(blocks), dtype=jnp.int32))
  return jax.lax.scan(step, carry, xs)[0]


_LAYER_KEY = re.compile(r"^(?P<prefix>(?:.+\.)?blocks)\.(?P<i>\d+)\.(?P<rest>.+)$")


def stack_layer_arrays(arrays: Mapping[str, np.ndarray], depth: int) -> dict[str, np.ndarray]:
  """Per-layer tensors ``<p>blocks.<i>.<name>`` (i < depth) -> stacked
  ``<p>blocks.<name>`` ``[depth, ...]``; other keys pass through. Every
  layer must hold the same names with the same shapes."""
  out, layers = {}, {}
  for key, arr in arrays.items():
    m = _LAYER_KEY.match(key)
    if m is None:
      out[key] = arr
      continue
    name = f"{m['prefix']}.{m['rest']}"
    layers.setdefault(name, {})[int(m["i"])] = arr
  for name, per_layer in layers.items():
    if sorted(per_layer) != list(range(depth)):
      raise ValueError(f"stack_layer_arrays: {name} has layers {sorted(per_layer)}, "
                       f"expected 0..{depth - 1}")
    out[name] = np.stack([per_layer[i] for i in range(depth)])
  return out


def stack_layer_params(params: Mapping[str, Any]) -> dict[str, Any]:
  """Nested pure-dict params of an unrolled stack -> the scanned layout
  (``{"blocks": {0: t0, 1: t1, ...}}`` -> ``{"blocks": stack(t0, t1, ...)}``),
  wherever a ``blocks`` key holds per-layer sub-trees."""
  out = {}
  for k, v in params.items():
    if k == "blocks" and isinstance(v, Mapping) and _is_layer_list(v):
      layers = [v[i] for i in sorted(v)]
      out[k] = jax.tree.map(lambda *xs: jnp.stack(xs), *layers)
    elif isinstance(v, Mapping):
      out[k] = stack_layer_params(v)
    else:
      out[k] = v
  return out


def _is_layer_list(d: Mapping) -> bool:
  return bool(d) and all(isinstance(k, int) for k in d)
