import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from facetrack_jax import sharding


def test_mesh_fills_minus_one():
  mesh = sharding.make_mesh((2, -1, 1))
  assert dict(mesh.shape) == {"data": 2, "fsdp": 4, "tensor": 1}


def test_mesh_rejects_bad_shape():
  with pytest.raises(ValueError, match="needs 6 devices"):
    sharding.make_mesh((2, 3, 1))
  with pytest.raises(ValueError, match="at most one -1"):
    sharding.make_mesh((-1, -1, 1))


def test_logical_to_spec_and_unknown_name():
  assert sharding.logical_to_spec(("batch", "length", "embed")) == P(("data", "fsdp"), None, "fsdp")
  with pytest.raises(KeyError, match="no rule"):
    sharding.logical_to_spec(("nope",))


def test_constrain_drops_axes_that_do_not_divide():
  mesh = sharding.make_mesh((2, 4, 1))
  with sharding.use_mesh(mesh):
    f = jax.jit(lambda x: sharding.constrain(x + 1, ("batch", "length")))
    assert f(jnp.ones((8, 3))).sharding.spec == P(("data", "fsdp"))
    assert f(jnp.ones((1, 3))).sharding.spec in (P(), P(None, None))


def _two_hosts(mesh):
  """Devices 0-3 on process 0, 4-7 on process 1 (as 2 hosts × 4 devices)."""
  del mesh
  return lambda d: int(d.id >= 4)


def test_data_shards_group_hosts_by_their_batch_rows():
  devs = jax.devices()
  # Batch over data=8: each host holds half the rows -> 2 disjoint shards.
  mesh = sharding.make_mesh((8, 1, 1))
  shards = sharding.data_shards(mesh, _two_hosts(mesh))
  assert {p: (s.index, s.count, s.leader) for p, s in shards.items()} == {
      0: (0, 2, True), 1: (1, 2, True)}
  # Tensor pairs across the hosts: each host holds every row -> one shard, 2 replicas.
  cross = jax.sharding.Mesh(np.array([[devs[i], devs[i + 4]] for i in range(4)])
                            .reshape(4, 1, 2), sharding.MESH_AXES)
  shards = sharding.data_shards(cross, _two_hosts(cross))
  assert {p: (s.index, s.count, s.leader, s.processes) for p, s in shards.items()} == {
      0: (0, 1, True, (0, 1)), 1: (0, 1, False, (0, 1))}
  # data=2 × tensor=2 × fsdp=2 with the tensor pairs on one host: 2 shards.
  mesh = sharding.make_mesh((2, 2, 2))
  assert sharding.data_shards(mesh, _two_hosts(mesh))[1].index == 1
  # A host holding rows {0, 1} and another {1, 2, 3}: no equal shares.
  odd = jax.sharding.Mesh(np.array(devs).reshape(8, 1, 1), sharding.MESH_AXES)
  hosts = {0: 0, 1: 0, 2: 1, 3: 1, 4: 1, 5: 1, 6: 1, 7: 1}
  with pytest.raises(ValueError, match="overlapping or unequal parts of the batch"):
    sharding.data_shards(odd, lambda d: hosts[d.id])


def test_mesh_from_config_dcn_needs_the_process_count():
  import ml_collections
  cfg = ml_collections.ConfigDict(dict(shape=(4, 1, 2), dcn_shape=(1, 1, 2)))
  with pytest.raises(ValueError, match=r"dcn_shape=\(1, 1, 2\).*the 1 processes"):
    sharding.mesh_from_config(cfg)
  cfg.dcn_shape = (1, 1, 1)  # one process: the plain layout
  assert dict(sharding.mesh_from_config(cfg).shape) == {"data": 4, "fsdp": 1, "tensor": 2}
