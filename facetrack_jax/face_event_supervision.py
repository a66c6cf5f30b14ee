"""Caption-derived event supervision of the face tower itself (an optional
training aid; ``config.model.face_event_head`` /
``config.train.face_event_loss_weight``, and ``config.model.face_tower_grad``).

Why. The event loss of :mod:`event_supervision` reads the mean of each
frame's G + K visual tokens, so its gradient reaches the face tower through
the compressor and projector, mixed with the caption loss's. Measured on the
demo's synthetic set (2026-12-07, ``benchmarks/face_token_probe.py``,
``benchmarks/face_visibility.py --labels captions``): in a trained captioner
the face tower's output reads the mouth events at ROC AUC 0.54-0.63, while
the same tower trained on these same caption targets alone reads them at
0.64-0.89 (talk 0.87, open 0.89, smile and frown 0.78). The targets can teach
the mouth; the captioner's shared updates do not.

What. The same targets and loss as the event head (``float32[P, E]`` per
clip from the caption, multiple-instance max over each phase's frames,
sigmoid cross-entropy), on a linear head over the face tower's mean output
token per frame. Frames without a face give ``NO_FACE_LOGIT`` so a phase's
max comes from the frames that show the face (a phase with none adds a
constant, no gradient). ``model.face_tower_grad`` scales the caption loss's
gradient at the tower's output: at 0 the face tower is an expression encoder
trained by this head alone, and the caption loss trains what reads it.
"""

from __future__ import annotations

from facetrack_jax.event_supervision import caption_targets, loss_sum, target_spec

__all__ = ["NO_FACE_LOGIT", "TARGETS", "caption_targets", "loss_sum", "loss_weight", "target_spec"]

NO_FACE_LOGIT = -30.0
TARGETS = "event"   # the batch carries these targets once, as event_targets


def loss_weight(config) -> float:
  """``config.train.face_event_loss_weight`` (0 when absent)."""
  return float((config.get("train") or {}).get("face_event_loss_weight", 0.0))
