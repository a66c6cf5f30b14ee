"""linear_dot_general: the same values and gradients as lax.dot_general."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from facetrack_jax.models.matmul import linear_dot_general


@pytest.mark.parametrize("x_shape,w_shape,n_in", [
    ((3, 5, 8), (8, 6), 1),          # "bld,df->blf"
    ((2, 4, 8), (8, 3, 4), 1),       # "bld,dhk->blhk"
    ((2, 4, 3, 4), (3, 4, 8), 2),    # "blhk,hkd->bld"
])
def test_values_and_gradients_match_dot_general(x_shape, w_shape, n_in):
  kx, kw, kd = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(kx, x_shape)
  w = jax.random.normal(kw, w_shape)
  dims = ((tuple(range(len(x_shape) - n_in, len(x_shape))), tuple(range(n_in))), ((), ()))
  out_shape = x_shape[:len(x_shape) - n_in] + w_shape[n_in:]
  dy = jax.random.normal(kd, out_shape)

  def loss(f):
    return lambda x, w: jnp.sum(f(x, w, dims) * dy)

  ours = jax.jit(jax.value_and_grad(loss(linear_dot_general), argnums=(0, 1)))(x, w)
  ref = jax.jit(jax.value_and_grad(loss(jax.lax.dot_general), argnums=(0, 1)))(x, w)
  np.testing.assert_allclose(ours[0], ref[0], rtol=1e-5, atol=1e-5)
  for g, r in zip(ours[1], ref[1]):
    assert g.shape == r.shape
    np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5)


def test_other_contractions_fall_back_to_dot_general():
  x = jnp.arange(24.0).reshape(2, 3, 4)
  w = jnp.arange(24.0).reshape(2, 4, 3)
  dims = (((2,), (1,)), ((0,), (0,)))   # batched: not the linear-layer pattern
  np.testing.assert_array_equal(linear_dot_general(x, w, dims),
                                jax.lax.dot_general(x, w, dims))
