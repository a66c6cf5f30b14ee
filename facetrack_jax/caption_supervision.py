"""The training aids read from the captions, by name: each is a head on the
visual tokens and a loss against targets the input pipeline reads from the
caption (``model.<name>_head``, ``train.<name>_loss_weight``,
``batch[targets_key(name)]``). None is used to generate.

* ``event``: per-frame event classifier, phase by phase (:mod:`event_supervision`);
* ``face_event``: the same on the face tower's output (:mod:`face_event_supervision`);
* ``attribute``: the main character's appearance from the face tokens
  (:mod:`attribute_supervision`);
* ``face_attribute``: the same on the face tower's output
  (:mod:`face_attribute_supervision`).
"""

from __future__ import annotations

import numpy as np

from facetrack_jax import (attribute_supervision, event_supervision,
                           face_attribute_supervision, face_event_supervision)

HEADS = {"event": event_supervision, "face_event": face_event_supervision,
         "attribute": attribute_supervision, "face_attribute": face_attribute_supervision}
# The heads that read the face tower's own output: with model.face_tower_grad
# = 0 they are what trains it.
FACE_TOWER_HEADS = ("face_event", "face_attribute")


def targets_key(name: str) -> str:
  """The batch field of head ``name``'s targets: ``<name>_targets``, or the
  field of the head whose targets it shares (a module's ``TARGETS``:
  face_event reads ``event_targets``, face_attribute ``attribute_targets``),
  so the batch carries each caption reading once."""
  return f"{getattr(HEADS[name], 'TARGETS', name)}_targets"


def active(aux_weights) -> dict[str, float]:
  """``{name: weight}`` of the heads of ``aux_weights`` (a mapping or None)
  whose loss is on (weight > 0)."""
  return {n: float(w) for n, w in (aux_weights or {}).items() if w > 0}


def weights(config) -> dict[str, float]:
  """:func:`active` weights of the config's heads, in ``HEADS`` order."""
  return active({name: mod.loss_weight(config) for name, mod in HEADS.items()})


def target_fields(names) -> dict[str, tuple[str, tuple[int, ...]]]:
  """``{targets_key(name): (dtype, per-clip shape)}`` of the heads ``names``:
  the batch fields the input pipeline adds for them."""
  return {targets_key(n): HEADS[n].target_spec() for n in names}


def check(config) -> None:
  """Each loss weight >= 0, a positive one has its head in the model, and a
  face tower cut off from the caption loss has a head to train it."""
  for name, mod in HEADS.items():
    w = mod.loss_weight(config)
    if w < 0:
      raise ValueError(f"config.train.{name}_loss_weight must be >= 0, got {w}")
    if w > 0 and not config.model.get(f"{name}_head", False):
      raise ValueError(f"config.train.{name}_loss_weight={w} needs config.model.{name}_head"
                       f"=True (the head the {name} loss trains)")
  if (float(config.model.get("face_tower_grad", 1.0)) == 0.0
      and not any(HEADS[h].loss_weight(config) > 0 for h in FACE_TOWER_HEADS)):
    raise ValueError("config.model.face_tower_grad=0 stops the caption loss at the face "
                     "tower: it needs config.train.face_event_loss_weight > 0 or "
                     "face_attribute_loss_weight > 0, or the tower never trains")


def caption_targets(names, caption: str) -> dict[str, np.ndarray]:
  """``{targets_key(name): targets}`` of a caption for the heads ``names``;
  heads that share targets (event and face_event, attribute and
  face_attribute) read the caption once."""
  out = {}
  for n in names:
    key = targets_key(n)
    if key not in out:
      out[key] = HEADS[n].caption_targets(caption)
  return out
