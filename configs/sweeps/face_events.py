r"""Teaching the face tower the mouth (issue 21): the caption-derived event
loss on the face tower's own output (``face_event_supervision.py``), with the
caption loss's gradient into the tower at full scale (``face_tower_grad=1``),
a tenth (0.1), or none (0: the tower is an expression encoder trained by that
head alone), × 3 seeds.

    python -m facetrack_jax.sweep --sweep configs/sweeps/face_events.py --workdir W

Why: in the face-token sweep's captioners the face tower reads the mouth
events at ROC AUC 0.54-0.63 (``results/face_token_probe_k4_seed2.md``), yet
the same tower trained on the same caption targets alone reads talking at
0.87 and smiling and frowning at 0.78 (``results/face_visibility_captions.md``).
Every other setting is the face-token sweep's K = 4 point (``face_tokens.py``,
the event loss on the visual tokens at weight 1 included), which is the
baseline. The demo took ``face_tower_grad=0.1`` (2026-12-07), so its K = 0
counterpart (no face tower, hence no face head) is the face-token sweep's
K = 0 point.
"""

import pathlib

from facetrack_jax import sweep

METRIC = "tem"
_face_tokens = sweep.load_sweep_file(pathlib.Path(__file__).with_name("face_tokens.py"))


def get_config(size: str = "full"):
  return _face_tokens.get_config(size)


def get_sweep():
  on = {"model.face_event_head": True, "train.face_event_loss_weight": 1.0}
  grad = sweep.axis("model.face_tower_grad", [1.0, 0.1, 0.0])
  return sweep.product([on], grad, sweep.seeds(3))
