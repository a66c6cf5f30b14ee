"""Reading outside weights: safetensors files → sharded NNX parameters.

No torch and no pickle: the safetensors header is JSON, the data is raw
little-endian bytes, memory-mapped here and viewed with numpy (``ml_dtypes``
supplies bfloat16). Importers use :class:`TensorSource` to take every
tensor exactly once — a missing, mis-shaped or unused tensor is an error
naming it — and :func:`materialize` to place each array straight onto its
parameter's sharding (no full host copy of the model is ever built on device).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
from collections.abc import Callable, Mapping

import jax
import ml_dtypes
import numpy as np
from etils import epath
from flax import nnx

from facetrack_jax import paths, sharding

_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16,
    "BF16": ml_dtypes.bfloat16, "I64": np.int64, "I32": np.int32,
    "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}


def _local_copy(path: epath.Path) -> tuple[str, bool]:
  """(a local file name holding ``path``, whether it is a temporary copy).
  A remote (``gs://``) file is copied to a temporary local file first, so
  that it can be memory-mapped; the copy is unlinked once mapped (the map
  keeps its pages until the arrays are freed)."""
  if not paths.is_remote(path):
    return os.fspath(path), False
  fd, tmp = tempfile.mkstemp(suffix=".safetensors")
  with os.fdopen(fd, "wb") as out, path.open("rb") as f:
    shutil.copyfileobj(f, out, 16 << 20)
  return tmp, True


def _read_file(path: epath.Path) -> dict[str, np.ndarray]:
  local, temporary = _local_copy(path)
  try:
    return _map_file(local, path)
  finally:
    if temporary:
      os.unlink(local)


def _map_file(local: str, path) -> dict[str, np.ndarray]:
  with open(local, "rb") as f:
    head = f.read(8)
    if len(head) != 8:
      raise ValueError(f"{path}: not a safetensors file (shorter than its header)")
    (n,) = struct.unpack("<Q", head)
    try:
      header = json.loads(f.read(n))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
      raise ValueError(f"{path}: not a safetensors file (bad JSON header: {e})") from e
  header.pop("__metadata__", None)
  data = np.memmap(local, dtype=np.uint8, mode="r", offset=8 + n)
  out = {}
  for name, info in header.items():
    if info["dtype"] not in _DTYPES:
      raise ValueError(f"{path}: tensor {name!r} has unsupported dtype {info['dtype']}")
    start, end = info["data_offsets"]
    out[name] = data[start:end].view(_DTYPES[info["dtype"]]).reshape(info["shape"])
  return out


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """All tensors of a ``.safetensors`` file, or of every such file in a
  directory (HF sharded checkpoints), as memory-mapped numpy arrays.
  ``path``: local or ``gs://`` (copied to a local temporary file first)."""
  path = paths.resolve(path)
  if path.is_dir():
    files = sorted(path.glob("*.safetensors"))
    if not files:
      raise FileNotFoundError(f"{path}: no *.safetensors files in this directory")
  elif path.is_file():
    files = [path]
  else:
    raise FileNotFoundError(f"{path}: no such file or directory")
  tensors: dict[str, np.ndarray] = {}
  for f in files:
    for name, arr in _read_file(f).items():
      if name in tensors:
        raise ValueError(f"{f}: tensor {name!r} appears in two files")
      tensors[name] = arr
  return tensors


class TensorSource:
  """Tensors of a checkpoint, each to be taken exactly once."""

  def __init__(self, tensors: Mapping[str, np.ndarray], origin: str = "checkpoint"):
    self._tensors = dict(tensors)
    self._used: set[str] = set()
    self.origin = origin

  @classmethod
  def open(cls, path: str | os.PathLike) -> "TensorSource":
    return cls(read_safetensors(path), origin=str(path))

  def __contains__(self, name: str) -> bool:
    return name in self._tensors

  def take(self, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """The tensor ``name`` (as float32/int numpy), checked against ``shape``."""
    if name not in self._tensors:
      raise KeyError(f"{self.origin}: missing tensor {name!r}")
    if name in self._used:
      raise ValueError(f"{self.origin}: tensor {name!r} taken twice")
    arr = self._tensors[name]
    if shape is not None and tuple(arr.shape) != tuple(shape):
      raise ValueError(f"{self.origin}: tensor {name!r} has shape {tuple(arr.shape)}, "
                       f"expected {tuple(shape)}")
    self._used.add(name)
    if arr.dtype == ml_dtypes.bfloat16 or arr.dtype == np.float16:
      return np.asarray(arr, dtype=np.float32)
    return np.asarray(arr)

  def skip(self, name: str) -> None:
    """Marks a tensor as deliberately unused (e.g. a buffer HF saves)."""
    if name in self._tensors:
      self._used.add(name)

  def check_all_used(self) -> None:
    left = sorted(set(self._tensors) - self._used)
    if left:
      more = f" (and {len(left) - 10} more)" if len(left) > 10 else ""
      raise ValueError(f"{self.origin}: {len(left)} tensor(s) left unused: {left[:10]}{more}")


def _path_str(path) -> str:
  return ".".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def materialize(make_model: Callable[[], nnx.Module],
                arrays: Mapping[str, np.ndarray], mesh=None) -> nnx.Module:
  """Builds ``make_model()`` abstractly, then fills every parameter from
  ``arrays`` (keyed by the dotted NNX state path, e.g. ``blocks.0.attn.q.kernel``),
  each placed directly onto the sharding its logical axes give on ``mesh``.

  Runs inside ``sharding.use_mesh(mesh)`` (``mesh=None``: one device). Every
  parameter must get an array of its exact shape and every array must be used.
  """
  with sharding.use_mesh(mesh) as mesh:
    graphdef, abstract = sharding.abstract_model(make_model, mesh)
  arrays = dict(arrays)
  flat = []
  for path, var in nnx.to_flat_state(abstract):
    key = _path_str(path)
    leaf = var.get_value() if hasattr(var, "get_value") else var.value
    if key not in arrays:
      raise KeyError(f"parameter {key} {tuple(leaf.shape)} got no tensor from the checkpoint")
    arr = arrays.pop(key)
    if tuple(arr.shape) != tuple(leaf.shape):
      raise ValueError(f"parameter {key}: checkpoint gives shape {tuple(arr.shape)}, "
                       f"model expects {tuple(leaf.shape)}")
    target = getattr(leaf, "sharding", None)
    arr = np.asarray(arr, dtype=leaf.dtype)
    value = jax.device_put(arr, target) if target is not None else jax.numpy.asarray(arr)
    flat.append((path, var.replace(value)))
  if arrays:
    raise ValueError(f"arrays for unknown parameters: {sorted(arrays)[:10]}")
  return nnx.merge(graphdef, nnx.from_flat_state(flat))
