"""Caption-derived appearance supervision of the face tokens (an optional
training aid; ``config.model.attribute_head`` /
``config.train.attribute_loss_weight``), the static twin of
:mod:`facetrack_jax.event_supervision`.

Why. A caption's first sentence names the main character's appearance
(gender, age, hair, skin, glasses, beard). Trained from scratch on captions
alone, the towers learn it only through the LM's attention over all
T*(G+K) visual tokens, and at K = 4 the demo named glasses and beard no
better than always answering the majority (issue 21, README "Reading the
face"). This loss asks the face tokens for the appearance directly.

What. Each caption's attributes are read with the offline judge's appearance
lexicon (:func:`facetrack_jax.metrics.judge_offline.read_attributes`, the
one that scores ``per_attribute.json``; works on FEC-Bench captions too) as
one class index per attribute, ``int32[A]`` (-1 where the caption does not
state it). A linear head on the clip's mean face token (the mean of all
visual tokens when there is no face tower) gives the logits of every
attribute's values side by side, ``float[B, C]``, C = Σ values; the loss is
each stated attribute's softmax cross-entropy over its own values. The head
is not used to generate: the LM still has to say what the tokens show.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from facetrack_jax.metrics import appearance_lexicon as lex

ATTRIBUTE_VALUES: dict[str, tuple[str, ...]] = {
    "gender": ("man", "woman"),
    "age": ("young", "middle-aged", "elderly"),
    "hair_colour": tuple(dict.fromkeys(lex.HAIR_COLOUR_OF_GROUP.values())),
    "hair_length": tuple(dict.fromkeys(lex.HAIR_LENGTH_OF_GROUP.values())) + ("bald",),
    "skin": tuple(dict.fromkeys(lex.SKIN_TONE_OF_GROUP.values())),
    "glasses": ("no", "yes"),
    "beard": ("no", "yes"),
}
assert tuple(ATTRIBUTE_VALUES) == lex.ATTRIBUTES, "one target per attribute the lexicon reads"
NUM_CLASSES = sum(len(v) for v in ATTRIBUTE_VALUES.values())
# Where each attribute's logits start in the head's output float[..., C].
OFFSETS = tuple(np.cumsum([0] + [len(v) for v in ATTRIBUTE_VALUES.values()])[:-1].tolist())


def loss_weight(config) -> float:
  """``config.train.attribute_loss_weight`` (0 when absent)."""
  return float((config.get("train") or {}).get("attribute_loss_weight", 0.0))


def target_spec() -> tuple[str, tuple[int, ...]]:
  """dtype and per-clip shape of :func:`caption_targets`: int32[A]."""
  return "int32", (len(ATTRIBUTE_VALUES),)


def caption_targets(caption: str) -> np.ndarray:
  """``int32[A]``: the index of each attribute's value in
  ``ATTRIBUTE_VALUES[a]`` as the caption states it, -1 where it does not."""
  from facetrack_jax.metrics.judge_offline import read_attributes  # the metrics' lexicon
  read = read_attributes(caption)
  return np.array([values.index(read[a]) if read[a] in values else -1
                   for a, values in ATTRIBUTE_VALUES.items()], np.int32)


def loss_sum(logits_bc: jax.Array, targets_ba: jax.Array) -> jax.Array:
  """Σ over clips and stated attributes of the softmax cross-entropy of each
  attribute's value among its own values (fp32). logits float[B, C],
  targets int32[B, A] (-1: not stated, no loss)."""
  z_bc = logits_bc.astype(jnp.float32)
  total = jnp.float32(0)
  for a, (start, values) in enumerate(zip(OFFSETS, ATTRIBUTE_VALUES.values())):
    logp_bv = jax.nn.log_softmax(z_bc[:, start:start + len(values)], axis=-1)
    y_b = targets_ba[:, a]
    picked_b = jnp.take_along_axis(logp_bv, jnp.maximum(y_b, 0)[:, None], axis=1)[:, 0]
    total = total - jnp.sum(jnp.where(y_b >= 0, picked_b, 0.0))
  return total


def predict(logits_bc: np.ndarray) -> list[dict[str, str]]:
  """The head's argmax value of every attribute, per clip (for probes)."""
  z_bc = np.asarray(logits_bc)
  return [{a: values[int(np.argmax(z_c[s:s + len(values)]))]
           for s, (a, values) in zip(OFFSETS, ATTRIBUTE_VALUES.items())} for z_c in z_bc]
