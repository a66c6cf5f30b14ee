"""Caption-derived appearance targets and their loss
(facetrack_jax/attribute_supervision.py)."""

import jax.numpy as jnp
import numpy as np

from facetrack_jax import attribute_supervision as at
from facetrack_jax.metrics.appearance_lexicon import ATTRIBUTES
from tests.test_event_supervision import _clips   # (script, caption) of synthetic clips


def _value(attrs: dict, a: str):
  """The generator's value of attribute ``a`` as a caption can state it."""
  v = attrs[a]
  if a in ("glasses", "beard"):
    return "yes" if v else "no"
  return v


def test_targets_are_the_generators_attributes():
  """On synthetic captions every attribute the caption states is the
  generator's value (skin is stated in some captions only, hair colour not
  for every bald head), and gender, age, glasses and beard always are."""
  stated = np.zeros(len(ATTRIBUTES))
  for s, caption in _clips(60):
    y = at.caption_targets(caption)
    assert y.dtype == np.int32 and y.shape == (len(ATTRIBUTES),)
    attrs = s.main_person.attributes
    for a, (name, values) in enumerate(at.ATTRIBUTE_VALUES.items()):
      if y[a] >= 0:
        assert values[y[a]] == _value(attrs, name), (name, caption)
    stated += y >= 0
  rate = dict(zip(ATTRIBUTES, stated / 60))
  for a in ("gender", "age", "glasses", "beard", "hair_length"):
    assert rate[a] == 1.0, rate
  assert 0.2 < rate["skin"] < 0.7, rate


def test_unstated_attributes_are_minus_one():
  y = dict(zip(ATTRIBUTES, at.caption_targets(
      "At the beginning of the video, she smiles. Towards the end, she nods.")))
  assert y["gender"] == at.ATTRIBUTE_VALUES["gender"].index("woman")   # from the pronouns
  assert all(y[a] == -1 for a in ("age", "hair_colour", "hair_length", "skin", "glasses", "beard"))


def test_offsets_cover_the_head():
  sizes = [len(v) for v in at.ATTRIBUTE_VALUES.values()]
  assert at.NUM_CLASSES == sum(sizes) and at.OFFSETS[0] == 0
  assert [b - a for a, b in zip(at.OFFSETS, at.OFFSETS[1:] + (at.NUM_CLASSES,))] == sizes
  assert all(len(set(v)) == len(v) for v in at.ATTRIBUTE_VALUES.values())


def test_loss_is_each_stated_attributes_cross_entropy_over_its_values():
  rng = np.random.default_rng(0)
  z_bc = rng.normal(size=(5, at.NUM_CLASSES)).astype(np.float32) * 3
  y_ba = np.stack([[rng.integers(-1, len(v)) for v in at.ATTRIBUTE_VALUES.values()]
                   for _ in range(5)]).astype(np.int32)
  assert (y_ba == -1).any() and (y_ba >= 0).any()
  want = 0.0
  for b in range(5):
    for a, (start, values) in enumerate(zip(at.OFFSETS, at.ATTRIBUTE_VALUES.values())):
      if y_ba[b, a] >= 0:
        z = z_bc[b, start:start + len(values)].astype(np.float64)
        want -= z[y_ba[b, a]] - np.log(np.exp(z).sum())
  got = float(at.loss_sum(jnp.asarray(z_bc), jnp.asarray(y_ba)))
  np.testing.assert_allclose(got, want, rtol=1e-5)
  # Nothing stated, no loss; predict() reads the argmax back per attribute.
  assert float(at.loss_sum(jnp.asarray(z_bc), jnp.full_like(jnp.asarray(y_ba), -1))) == 0.0
  onehot = np.full((1, at.NUM_CLASSES), -5.0, np.float32)
  for start, values in zip(at.OFFSETS, at.ATTRIBUTE_VALUES.values()):
    onehot[0, start + len(values) - 1] = 5.0
  assert at.predict(onehot) == [{a: v[-1] for a, v in at.ATTRIBUTE_VALUES.items()}]
