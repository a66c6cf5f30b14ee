"""Caption-derived appearance supervision of the face tower itself (an
optional training aid; ``config.model.face_attribute_head`` /
``config.train.face_attribute_loss_weight``), the static twin of
:mod:`facetrack_jax.face_event_supervision`.

Why. With ``model.face_tower_grad`` = 0.1 the face tower learns mostly from
the face event head, and the appearance it carried fell (demo, 3 seeds,
2026-12-07: hair colour 0.59 against 0.84, age at its prior; README "Reading
the face"). The appearance head of :mod:`attribute_supervision` reads the
face *tokens*, so its gradient passes through the compressor and projector
that the LM also reads, and there it crowded out the events (TEM 0.25 at
weight 0.1). This head asks the face tower's own output for the appearance,
beside the face event head, where the caption loss's share is small.

What. The same targets, loss and prediction as the appearance head
(``int32[A]`` per clip from the caption's appearance words, each stated
attribute's softmax cross-entropy over its own values), on a linear head
over the face tower's mean output token averaged over the frames that show a
face (a clip with none gives the head's bias alone).
"""

from __future__ import annotations

from facetrack_jax.attribute_supervision import caption_targets, loss_sum, predict, target_spec

__all__ = ["TARGETS", "caption_targets", "loss_sum", "loss_weight", "predict", "target_spec"]

TARGETS = "attribute"   # the batch carries these targets once, as attribute_targets


def loss_weight(config) -> float:
  """``config.train.face_attribute_loss_weight`` (0 when absent)."""
  return float((config.get("train") or {}).get("face_attribute_loss_weight", 0.0))
