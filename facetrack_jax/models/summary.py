"""Parameter counts of a config, without materialising it (``jax.eval_shape``),
and every parameter's logical axes and PartitionSpec on a mesh.

    python -m facetrack_jax.models.summary --config configs/paper.py
    python -m facetrack_jax.models.summary --config configs/paper.py --sharding
        # -> tests/golden/paper_sharding.txt (mesh data=2, fsdp=2, tensor=2 on 8
        #    fake devices); tests/test_golden_sharding.py fails on any difference
"""

from __future__ import annotations

import math

import jax
from absl import app, flags
from flax import nnx
from ml_collections import config_flags

from facetrack_jax import sharding
from facetrack_jax.models.facetrack import FaceTrackMM, num_visual_tokens

REFERENCE_MESH = (2, 2, 2)


def count_params(model_cfg) -> dict[str, int]:
  """Parameters per top-level component, and "total", via eval_shape."""
  with sharding.use_mesh():
    abstract = nnx.eval_shape(lambda: FaceTrackMM(model_cfg, rngs=nnx.Rngs(0)))
  counts: dict[str, int] = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(nnx.state(abstract, nnx.Param)):
    top = str(getattr(path[0], "key", path[0]))
    counts[top] = counts.get(top, 0) + math.prod(leaf.shape)
  counts["total"] = sum(counts.values())
  return counts


def sharding_table(model_cfg, mesh) -> str:
  """One line per parameter: path, shape, logical axes, PartitionSpec on ``mesh``."""
  _, state = sharding.abstract_model(lambda: FaceTrackMM(model_cfg, rngs=nnx.Rngs(0)), mesh)
  lines = [f"# mesh {dict(mesh.shape)}; path  shape  logical axes  spec"]
  for path, var in nnx.to_flat_state(state):
    leaf = var.get_value()
    axes = var.get_metadata().get("out_sharding")
    lines.append(f"{'.'.join(map(str, path))}  {tuple(leaf.shape)}  {tuple(axes or ())}  "
                 f"{leaf.sharding.spec}")
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  cfg = _CONFIG.value.model
  if _SHARDING.value:       # the backend has not started yet: 8 fake devices
    import os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    print(sharding_table(cfg, sharding.make_mesh(REFERENCE_MESH)), end="")
    return
  counts = count_params(cfg)
  print(f"{'component':<16}{'parameters':>16}")
  for name, n in counts.items():
    print(f"{name:<16}{n:>16,}")
  print(f"visual tokens per clip: {num_visual_tokens(cfg)}")


if __name__ == "__main__":   # flags only for the program (importers define their own)
  _CONFIG = config_flags.DEFINE_config_file("config", "configs/tiny.py", "Config file.")
  _SHARDING = flags.DEFINE_bool("sharding", False, "print the sharding table instead "
                                "(reference mesh data=2, fsdp=2, tensor=2 on 8 fake devices)")
  app.run(main)
