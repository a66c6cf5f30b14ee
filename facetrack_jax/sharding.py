"""Logical axis names → mesh axes: the one rule table of the project.

Every parameter is created with logical axis names (``nnx.with_partitioning``
or ``nnx.Param(..., out_sharding=...)``) and every key activation is
constrained with :func:`constrain`. The names are mapped to the mesh axes
``data``, ``fsdp`` and ``tensor`` by :data:`RULES` — change the table, not the
model, to try another layout.

A tensor dimension that its mesh axes do not divide keeps the longest
leading run of them that does (none: that dimension is replicated), for
parameters (:func:`abstract_model`) and activations (:func:`constrain`)
alike — e.g. SigLIP-so400m's width 1152 = 2⁷·9 over a 256-way ``fsdp`` axis
stays whole; ``tests/golden/paper_sharding.txt`` lists every parameter's
resulting spec on a reference mesh.

Usage::

    mesh = make_mesh((-1, 1, 1))
    with use_mesh(mesh):             # mesh + rules active
        model = nnx.jit(lambda: FaceTrackMM(cfg, rngs=nnx.Rngs(0)))()
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Sequence

import jax
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")

# Logical name -> mesh axis (or tuple of axes, or None = replicated).
RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    # activations
    ("batch", ("data", "fsdp")),
    ("batch_data", "data"),      # the batch split over data replicas only (embedding lookup)
    ("length", None),            # sequence / token axis
    ("frames", None),            # time axis of a clip
    ("act_embed", None),         # model width of activations
    ("act_mlp", "tensor"),
    ("act_heads", "tensor"),
    ("act_kv_heads", "tensor"),
    ("act_vocab", "tensor"),
    # parameters
    ("layers", None),            # the stacked-layers axis of scanned blocks (models/layers.py)
    ("embed", "fsdp"),           # model width (LM or ViT)
    ("mlp", "tensor"),           # MLP hidden
    ("heads", "tensor"),         # query heads
    ("kv_heads", "tensor"),      # key/value heads (GQA)
    ("head_dim", None),
    ("fused", None),             # the q/k/v (or gate/up) slot of a fused projection
    ("vocab", "tensor"),
    ("patch", None),             # conv patch kernel (h, w, c)
    ("positions", None),         # learned position embeddings / time embeddings
    ("queries", None),           # learned query tokens (attention pooling)
    ("norm", "fsdp"),            # norm scales / biases (tiny: gathered per use)
    ("events", None),            # event classes (event_supervision.py)
    ("attribute_values", None),  # appearance values (attribute_supervision.py)
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


def mesh_from_config(mesh_cfg, devices=None) -> Mesh:
  """The mesh of ``config.mesh``: ``shape`` (global, over :data:`MESH_AXES`,
  one -1 allowed) and optionally ``dcn_shape``, how many *processes* each axis
  spans (product = process count; default: processes along the first axis
  that is not 1, as ``jax.make_mesh`` lays them out).

  With ``dcn_shape`` the devices are arranged by
  ``mesh_utils.create_hybrid_device_mesh(..., process_is_granule=True)``:
  e.g. 2 hosts × 4 devices, ``shape=(4, 1, 2)``, ``dcn_shape=(1, 1, 2)``
  puts each tensor pair on two hosts (each host holds a whole replica of the
  batch: :func:`data_shard`).
  """
  shape = tuple(mesh_cfg.shape)
  dcn = tuple(mesh_cfg.get("dcn_shape") or ())
  if not dcn:
    return make_mesh(shape, devices=devices)
  from jax.experimental import mesh_utils
  devices = jax.devices() if devices is None else devices
  n_proc = len({d.process_index for d in devices})
  if len(dcn) != len(MESH_AXES) or math.prod(dcn) != n_proc:
    raise ValueError(f"config.mesh.dcn_shape={dcn}: needs one entry per mesh axis "
                     f"{MESH_AXES} whose product is the {n_proc} processes")
  full = list(make_mesh(shape, devices=devices).devices.shape)  # resolves the -1
  if any(f % d for f, d in zip(full, dcn)):
    raise ValueError(f"config.mesh.dcn_shape={dcn} does not divide the mesh shape "
                     f"{tuple(full)}")
  ici = tuple(f // d for f, d in zip(full, dcn))
  try:
    arr = mesh_utils.create_hybrid_device_mesh(ici, dcn, devices, process_is_granule=True)
  except ValueError as e:
    raise ValueError(f"config.mesh: shape {tuple(full)} with dcn_shape {dcn} does not fit "
                     f"{len(devices)} devices on {n_proc} processes: {e}") from e
  return Mesh(arr, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))


@dataclasses.dataclass(frozen=True)
class DataShard:
  """The part of the global batch one process loads.

  Processes whose devices hold the same batch rows (replicas along an axis the
  batch is not split over, e.g. ``tensor`` spanning hosts) form one data
  shard: they load identical data. ``index`` in ``[0, count)``; the global
  batch is ``count`` host batches of ``batch_size // count`` rows. ``leader``:
  this is the lowest process of its shard (it writes the shard's iterator
  state; its predictions stand for the shard's).
  """
  index: int
  count: int
  leader: bool = True
  processes: tuple[int, ...] = (0,)   # the processes of this shard


def data_shards(mesh: Mesh, process_of: Callable | None = None) -> dict[int, DataShard]:
  """``{process: DataShard}`` from the devices' places in the mesh's batch
  axes (``RULES["batch"]``). ``process_of(device)`` (default: its
  ``process_index``) names a device's process.

  Raises ``ValueError`` if two processes need overlapping but different rows
  (a layout whose hosts cannot each load one equal, contiguous share)."""
  process_of = process_of or (lambda d: d.process_index)
  batch_axes = logical_to_spec(("batch",))[0]
  batch_axes = (batch_axes,) if isinstance(batch_axes, str) else tuple(batch_axes or ())
  n = math.prod(mesh.shape[a] for a in batch_axes)  # one row per batch shard
  index_map = NamedSharding(mesh, P(batch_axes or None)).devices_indices_map((n,))
  rows: dict[int, set[int]] = {}
  for device, idx in index_map.items():
    sl = idx[0]
    rows.setdefault(process_of(device), set()).update(range(n)[sl])
  groups = sorted({frozenset(r) for r in rows.values()}, key=min)
  sizes = {len(g) for g in groups}
  if sum(map(len, groups)) != n or len(sizes) != 1:
    raise ValueError(
        f"mesh {dict(mesh.shape)} (devices {mesh.devices.shape}): processes hold "
        f"overlapping or unequal parts of the batch (rows per process: "
        f"{ {p: sorted(r) for p, r in sorted(rows.items())} }); "
        "arrange the mesh so that each process's devices hold whole batch shards")
  out = {}
  for i, g in enumerate(groups):
    procs = tuple(sorted(p for p, r in rows.items() if r == g))
    for p in procs:
      out[p] = DataShard(i, len(groups), p == procs[0], procs)
  return out


def data_shard(mesh: Mesh) -> DataShard:
  """This process's :class:`DataShard` of ``mesh``."""
  return data_shards(mesh)[jax.process_index()]


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
  return jax.lax.with_sharding_constraint(x, fitted_spec(x.shape, logical_axes, mesh))


def fitted_spec(shape: Sequence[int], logical_axes: Sequence[str | None], mesh) -> P:
  """:func:`logical_to_spec` fitted to ``shape``: each dimension keeps the
  longest leading run of its mesh axes whose size divides it (e.g. batch 1
  at decode stays whole)."""
  return _fit(shape, logical_to_spec(logical_axes), mesh)


def _fit(shape: Sequence[int], spec: P, mesh) -> P:
  fixed = []
  for dim, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
    names = (axes,) if isinstance(axes, str) else tuple(axes or ())
    while names and dim % math.prod(mesh.shape[a] for a in names):
      names = names[:-1]
    fixed.append(None if not names else names[0] if len(names) == 1 else names)
  return P(*fixed)


def abstract_model(make_model, mesh: Mesh):
  """``nnx.get_abstract_model`` inside :func:`use_mesh`, each parameter's
  sharding fitted to its shape (module docstring): (graphdef, abstract state
  whose leaves are ShapeDtypeStructs with their shardings)."""
  with use_mesh(mesh):
    graphdef, state = nnx.get_abstract_model(make_model, mesh)

  def fit(x):
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=NamedSharding(
        mesh, _fit(x.shape, x.sharding.spec, mesh)))

  return graphdef, jax.tree.map(fit, state)


def named_sharding(mesh: Mesh, logical_axes: Sequence[str | None]) -> NamedSharding:
  return NamedSharding(mesh, logical_to_spec(logical_axes))
