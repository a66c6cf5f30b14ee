r"""Appearance through the face tower (issue 21): the caption-derived
appearance loss on the face tower's own output (``face_attribute_supervision.py``)
beside the demo's face event head, at weights 0.01 to 1, × 3 seeds.

    python -m facetrack_jax.sweep --sweep configs/sweeps/face_attributes.py --workdir W

Why: with ``face_tower_grad=0.1`` (the demo since 2026-12-07) the face tower
learns the mouth from the face event head, and the appearance it carried
fell (hair colour 0.59 against 0.84, age at its prior;
``results/sweep_face_events_2026-12-07.md``). The appearance head on the
face *tokens* (``face_reading.py``) crowded the events out of the towers the
LM reads (TEM 0.25 at weight 0.1); this one reads the face tower's output,
where the caption loss's share is a tenth. Every other setting is the demo's
before this head (``face_events.py`` at ``face_tower_grad=0.1``), which is the
baseline. The demo took weight 0.03 (2026-12-07): its point ``0.03,seed=0`` is
the demo's config with the face ViT at width 96 (the demo's is 192 since
``face_capacity.py``).
"""

import pathlib

from facetrack_jax import sweep

METRIC = "tem"
_face_tokens = sweep.load_sweep_file(pathlib.Path(__file__).with_name("face_tokens.py"))


def get_config(size: str = "full"):
  config = _face_tokens.get_config(size)
  config.model.face_event_head, config.model.face_tower_grad = True, 0.1
  config.train.face_event_loss_weight = 1.0
  return config


def get_sweep():
  on = {"model.face_attribute_head": True}
  weight = sweep.axis("train.face_attribute_loss_weight", [0.01, 0.03, 0.1, 0.3, 1.0])
  return sweep.product([on], weight, sweep.seeds(3))
