"""Caption-derived event targets and the multiple-instance event loss
(facetrack_jax/event_supervision.py)."""

import jax.numpy as jnp
import numpy as np
import pytest

from data_prep.synthetic import captions, script
from facetrack_jax import event_supervision as es
from facetrack_jax.events import PHASES, swap_left_right


def _clips(n, seed=0):
  rng = np.random.default_rng(seed)
  for _ in range(n):
    s = script.sample_clip_script(rng, num_frames=16)
    yield s, captions.write_caption(s, rng)


def test_targets_are_the_scripted_events_by_phase():
  """On synthetic captions the targets are exactly the generator's events."""
  for s, caption in _clips(40):
    want = np.zeros((len(PHASES), len(es.EVENT_KEYS)), np.float32)
    for e in s.main_person.events:
      want[PHASES.index(e.phase), es.EVENT_KEYS.index(e.key)] = 1
    np.testing.assert_array_equal(es.caption_targets(caption), want, err_msg=caption)


def test_a_flipped_caption_swaps_left_and_right_targets():
  key = es.EVENT_KEYS.index
  c = ("A young man. At the beginning of the video, he turns his head to the left. "
       "Towards the end of the video, he looks to the right.")
  y, y_flip = es.caption_targets(c), es.caption_targets(swap_left_right(c))
  assert y[0, key("head_turn_left")] == 1 and y_flip[0, key("head_turn_right")] == 1
  assert y[3, key("gaze_look_right")] == 1 and y_flip[3, key("gaze_look_left")] == 1
  assert y.sum() == y_flip.sum() == 2
  assert es.caption_targets("A young man with short hair.").sum() == 0


def test_phase_of_frames():
  np.testing.assert_array_equal(es.phase_of_frames(8), [0, 0, 1, 1, 2, 2, 3, 3])
  np.testing.assert_array_equal(es.phase_of_frames(4), [0, 1, 2, 3])
  assert np.bincount(es.phase_of_frames(6)).tolist() == [2, 1, 1, 2]   # round() bounds
  with pytest.raises(ValueError, match="4 frames"):
    es.phase_of_frames(3)


def test_loss_is_the_cross_entropy_of_each_phases_max_logit():
  rng = np.random.default_rng(0)
  z_bte = rng.normal(size=(3, 8, len(es.EVENT_KEYS))).astype(np.float32) * 3
  y_bpe = (rng.random((3, 4, len(es.EVENT_KEYS))) < 0.2).astype(np.float32)
  z_bpe = z_bte.reshape(3, 4, 2, -1).max(axis=2)
  p = 1 / (1 + np.exp(-z_bpe.astype(np.float64)))
  want = -np.sum(y_bpe * np.log(p) + (1 - y_bpe) * np.log(1 - p))
  got = float(es.loss_sum(jnp.asarray(z_bte), jnp.asarray(y_bpe)))
  np.testing.assert_allclose(got, want, rtol=1e-5)
