r"""Reading the face (issue 21): does the captioner name the main character's
appearance and mouth events better than the majority-class prior?

    python -m facetrack_jax.sweep --sweep configs/sweeps/face_reading.py --workdir W

Every run is the face-token sweep's K = 4 point (``face_tokens.py``: the
demo's model, event loss on) with one change, × 3 seeds:

* ``attribute_head``: the caption-derived appearance loss on the face tokens
  (``facetrack_jax/attribute_supervision.py``, weight 1);
* the same with 48-px face crops (the face-token sweep's 48-px point plus
  the appearance loss).

The baseline (no appearance loss, 32 and 48 px) is the face-token sweep's
``face_tokens=4`` and ``face_size=48`` points; ``per_attribute.json`` and
``per_event.json`` of each run hold the per-attribute and per-event lifts.
"""

import pathlib

from facetrack_jax import sweep

METRIC = "tem"
_face_tokens = sweep.load_sweep_file(pathlib.Path(__file__).with_name("face_tokens.py"))


def get_config(size: str = "full"):
  return _face_tokens.get_config(size)


def get_sweep():
  attr = {"model.attribute_head": True, "train.attribute_loss_weight": 1.0}
  return sweep.product([attr, dict(attr, **{"model.face_size": 48})], sweep.seeds(3))
