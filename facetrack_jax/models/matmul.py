"""The matmul of every linear layer, with a weight gradient XLA:CPU runs fast.

    y = linear_dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))   # = x @ kernel
    nnx.Linear(..., dot_general=linear_dot_general)                        # same, in a Linear

A drop-in for ``jax.lax.dot_general`` in layers whose kernel is contracted
on its leading dims by the trailing dims of the input (``x[..., I] @ w[I, O]``).
Forward and the input gradient are unchanged. The *kernel* gradient
``dW[I, O] = Σ_n x[n, I] · dy[n, O]`` contracts both operands on their major
(row) dimension; XLA:CPU's YNNPACK dot fusion only takes a left operand
contracted on its minor dimension, so autodiff's dW ran as a plain XLA dot at
about half the speed (measured: 44 vs 85 GFLOP/s for the 1352×768×2048 dot
of the ``small`` LM's MLP; 21 % of a train step). Here the backward pass
materialises ``xᵀ`` (an ``optimization_barrier`` keeps the algebraic
simplifier from folding the transpose back into the dot) so dW is the
row-major ``xᵀ[I, N] @ dy[N, O]`` YNNPACK takes; the transpose costs one copy
of ``x``. Only on CPU: GPU/TPU BLAS take transposed operands at full speed,
so there it is plain ``lax.dot_general``. Any other contraction pattern
(batch dims, other contracting dims, explicit ``out_sharding``) falls back
to ``lax.dot_general`` too, and so does everything traced inside
:func:`accelerator_dots` (an AOT dry run on fake CPU devices compiles what a
GPU/TPU would run).
"""

from __future__ import annotations

import contextlib
import functools
import math

import jax
import jax.numpy as jnp


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _matmul(x_ni, w_io, precision, preferred_element_type):
  """float[N, I] @ float[I, O] -> float[N, O]. One fp32 row (batch-1
  decoding) goes as a 1-D vector: XLA:CPU's matrix-vector path reads the
  weights 1.30x faster than the [1, I] matmul (0.66 vs 0.51 of the read
  bandwidth on the ``small`` LM's shapes; ``benchmarks/matvec_cpu.py``)."""
  if x_ni.shape[0] == 1 and w_io.dtype == jnp.float32:
    return jax.lax.dot(x_ni[0], w_io, precision=precision,
                       preferred_element_type=preferred_element_type)[None]
  return jax.lax.dot(x_ni, w_io, precision=precision,
                     preferred_element_type=preferred_element_type)


def _matmul_fwd(x_ni, w_io, precision, preferred_element_type):
  return _matmul(x_ni, w_io, precision, preferred_element_type), (x_ni, w_io)


def _matmul_bwd(precision, preferred_element_type, res, dy_no):
  x_ni, w_io = res
  # "no,io->ni": input gradient, the kernel contracted on its minor dim (YNNPACK takes it).
  dx_ni = jax.lax.dot_general(dy_no.astype(w_io.dtype), w_io, (((1,), (1,)), ((), ())),
                              precision=precision,
                              preferred_element_type=preferred_element_type)
  x_in = jax.lax.optimization_barrier(x_ni.T)        # a real row-major copy of xᵀ
  # "in,no->io": kernel gradient as a canonical row-major matmul.
  dw_io = jax.lax.dot(x_in, dy_no.astype(x_in.dtype), precision=precision,
                      preferred_element_type=preferred_element_type)
  return dx_ni.astype(x_ni.dtype), dw_io.astype(w_io.dtype)


_matmul.defvjp(_matmul_fwd, _matmul_bwd)


_ACCELERATOR_DOTS = [False]


@contextlib.contextmanager
def accelerator_dots():
  """Within this context every linear layer traces as plain ``lax.dot_general``
  (the GPU/TPU path), also on CPU."""
  old, _ACCELERATOR_DOTS[0] = _ACCELERATOR_DOTS[0], True
  try:
    yield
  finally:
    _ACCELERATOR_DOTS[0] = old


def linear_dot_general(lhs, rhs, dimension_numbers, precision=None,
                       preferred_element_type=None, out_sharding=None):
  """``jax.lax.dot_general`` (same signature) with the CPU-friendly kernel
  gradient above when ``lhs`` [..., I...] is contracted on its trailing dims
  with the leading dims of ``rhs`` [I..., O...] and nothing else is asked."""
  (lc, rc), (lb, rb) = dimension_numbers
  n = len(lc)
  plain = (lb or rb or out_sharding is not None or jax.default_backend() != "cpu"
           or _ACCELERATOR_DOTS[0]
           or tuple(lc) != tuple(range(lhs.ndim - n, lhs.ndim)) or tuple(rc) != tuple(range(n)))
  if plain:
    return jax.lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                               preferred_element_type=preferred_element_type,
                               out_sharding=out_sharding)
  lead, out = lhs.shape[:lhs.ndim - n], rhs.shape[n:]
  i = math.prod(rhs.shape[:n])
  y_no = _matmul(lhs.reshape(-1, i), rhs.reshape(i, -1), precision, preferred_element_type)
  return y_no.reshape(*lead, *out)
