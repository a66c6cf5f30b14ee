r"""Does a wider face tower hold appearance and events both? (issue 21)

    python -m facetrack_jax.sweep --sweep configs/sweeps/face_capacity.py --workdir W

Why: in ``face_attributes.py`` a heavier appearance loss on the face tower's
output takes the events out of the captions (TEM 0.52 at weight 0, 0.49 at
0.03, 0.38 at 0.1). If the demo's face ViT (2 layers, width 96) is too
small for both, a wider one should keep TEM at the heavier weight. The demo's
config (``face_attributes.py`` at 0.03, seed 0) with the face ViT at width
192 (6 heads, MLP 384), at appearance weights 0.03 and 0.1, × 3 seeds. The
demo took width 192 at 0.03 (2026-12-07: TEM 0.549 ± 0.046 over 3 seeds against
0.485 ± 0.032 at width 96, and every attribute but the beard named more often):
its point ``0.03,seed=0`` is the demo's config with the token event loss at
weight 1 (3 in the demo since ``event_weight_wide.py``).
"""

import pathlib

from facetrack_jax import sweep

METRIC = "tem"
_face_attributes = sweep.load_sweep_file(pathlib.Path(__file__).with_name("face_attributes.py"))


def get_config(size: str = "full"):
  config = _face_attributes.get_config(size)
  config.model.face_attribute_head = True
  return config


def get_sweep():
  wide = [{"model.face_vit.width": 192, "model.face_vit.num_heads": 6,
           "model.face_vit.mlp_dim": 384}]
  weight = sweep.axis("train.face_attribute_loss_weight", [0.03, 0.1])
  return sweep.product(wide, weight, sweep.seeds(3))
