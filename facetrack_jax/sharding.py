"""Logical axis names → mesh axes: the one rule table of the project.

Every parameter is created with logical axis names (``nnx.with_partitioning``
or ``nnx.Param(..., out_sharding=...)``) and every key activation is
constrained with :func:`constrain`. The names are mapped to the mesh axes
``data``, ``fsdp`` and ``tensor`` by :data:`RULES` — change the table, not the
model, to try another layout.

Usage::

    mesh = make_mesh((-1, 1, 1))
    with use_mesh(mesh):             # mesh + rules active
        model = nnx.jit(lambda: FaceTrackMM(cfg, rngs=nnx.Rngs(0)))()
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import jax
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")

# Logical name -> mesh axis (or tuple of axes, or None = replicated).
RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    # activations
    ("batch", ("data", "fsdp")),
    ("length", None),            # sequence / token axis
    ("frames", None),            # time axis of a clip
    ("act_embed", None),         # model width of activations
    ("act_mlp", "tensor"),
    ("act_heads", "tensor"),
    ("act_kv_heads", "tensor"),
    ("act_vocab", "tensor"),
    # parameters
    ("embed", "fsdp"),           # model width (LM or ViT)
    ("mlp", "tensor"),           # MLP hidden
    ("heads", "tensor"),         # query heads
    ("kv_heads", "tensor"),      # key/value heads (GQA)
    ("head_dim", None),
    ("vocab", "tensor"),
    ("patch", None),             # conv patch kernel (h, w, c)
    ("positions", None),         # learned position embeddings / time embeddings
    ("queries", None),           # learned query tokens (attention pooling)
    ("norm", None),              # norm scales / biases
    ("events", None),            # event classes (event_supervision.py)
)


def make_mesh(shape: Sequence[int], axes: Sequence[str] = MESH_AXES,
              devices=None) -> Mesh:
  """A mesh over ``axes``; one entry of ``shape`` may be -1 (= the rest).

  Axes are ``AxisType.Auto`` (GSPMD propagation, as MaxText uses), not the
  Explicit default of recent ``jax.make_mesh``.
  """
  devices = jax.devices() if devices is None else devices
  shape = list(shape)
  if len(shape) != len(axes):
    raise ValueError(f"mesh shape {shape} does not match axes {tuple(axes)}")
  if shape.count(-1) > 1:
    raise ValueError(f"mesh shape {shape}: at most one -1")
  if -1 in shape:
    rest = math.prod(s for s in shape if s != -1)
    if len(devices) % rest:
      raise ValueError(f"mesh shape {shape} does not divide {len(devices)} devices")
    shape[shape.index(-1)] = len(devices) // rest
  if math.prod(shape) != len(devices):
    raise ValueError(f"mesh shape {shape} needs {math.prod(shape)} devices, "
                     f"have {len(devices)}")
  return jax.make_mesh(tuple(shape), tuple(axes),
                       axis_types=(AxisType.Auto,) * len(axes), devices=devices)


def single_device_mesh() -> Mesh:
  """A (1, 1, 1) mesh on the first device: the default when none is given."""
  return make_mesh((1, 1, 1), devices=jax.devices()[:1])


@contextlib.contextmanager
def use_mesh(mesh: Mesh | None = None, rules=RULES):
  """Activates ``mesh`` (default: :func:`single_device_mesh`) and the logical
  rules. Models are always created inside this context: parameters carry
  logical axis names, and flax needs a mesh to turn them into shardings."""
  mesh = single_device_mesh() if mesh is None else mesh
  with jax.set_mesh(mesh), nnx.logical_axis_rules(rules):
    yield mesh


def logical_to_spec(logical_axes: Sequence[str | None], rules=RULES) -> P:
  """``("batch", "length", "act_embed")`` -> ``P(("data", "fsdp"), None, None)``."""
  table = dict(rules)
  out = []
  for name in logical_axes:
    if name is None:
      out.append(None)
    elif name not in table:
      raise KeyError(f"logical axis {name!r} has no rule in sharding.RULES")
    else:
      out.append(table[name])
  return P(*out)


def _active_mesh() -> Mesh | None:
  mesh = jax.sharding.get_abstract_mesh()
  if mesh is None or mesh.empty:
    return None
  return mesh


def constrain(x: jax.Array, logical_axes: Sequence[str | None]) -> jax.Array:
  """``with_sharding_constraint`` by logical names, inside jit.

  A no-op without a mesh, and on concrete (eager) arrays: a constraint only
  guides XLA's partitioner, and an eager array may live on other devices."""
  mesh = _active_mesh()
  if mesh is None or not isinstance(x, jax.core.Tracer):
    return x
  spec = logical_to_spec(logical_axes)
  # Drop mesh axes that do not divide the dimension (e.g. batch 1 at decode).
  fixed = []
  for dim, axes in zip(x.shape, spec):
    names = (axes,) if isinstance(axes, str) else (axes or ())
    size = math.prod(mesh.shape[a] for a in names)
    fixed.append(axes if size and dim % size == 0 else None)
  return jax.lax.with_sharding_constraint(x, P(*fixed))


def named_sharding(mesh: Mesh, logical_axes: Sequence[str | None]) -> NamedSharding:
  return NamedSharding(mesh, logical_to_spec(logical_axes))
