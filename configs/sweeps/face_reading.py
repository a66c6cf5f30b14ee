r"""Reading the face (issue 21): does the captioner name the main character's
appearance and mouth events better than the majority-class prior?

    python -m facetrack_jax.sweep --sweep configs/sweeps/face_reading.py --workdir W

Every run is the face-token sweep's K = 4 point (``face_tokens.py``: the
demo's model, event loss on) plus the caption-derived appearance loss on the
face tokens (``facetrack_jax/attribute_supervision.py``) at weight 1 and 0.1,
× 3 seeds. Weight 1 (2026-12-07, seed 0) read hair and beard better but
drowned the events (TEM 0.15: its gradient dominates the clipped global
norm), hence 0.1.

The baseline (no appearance loss) is the face-token sweep's ``face_tokens=4``
point; ``per_attribute.json``, ``per_event.json`` and ``heads.json`` of each
run hold the per-attribute and per-event lifts and what the heads read.
"""

import pathlib

from facetrack_jax import sweep

METRIC = "tem"
_face_tokens = sweep.load_sweep_file(pathlib.Path(__file__).with_name("face_tokens.py"))


def get_config(size: str = "full"):
  return _face_tokens.get_config(size)


def get_sweep():
  attr = [{"model.attribute_head": True, "train.attribute_loss_weight": w} for w in (1.0, 0.1)]
  return sweep.product(attr, sweep.seeds(3))
