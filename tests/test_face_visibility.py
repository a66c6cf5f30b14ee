"""benchmarks/face_visibility.py --labels attributes: the ground truth's
appearance as attribute classes, and accuracy per frame and per clip."""

import numpy as np

from benchmarks.face_visibility import attribute_labels, attribute_scores
from facetrack_jax import attribute_supervision as att


def test_attribute_labels_index_the_supervision_values():
  gt = {"main": 1, "faces": [
      {"attributes": {}},
      {"attributes": {"gender": "woman", "age": "elderly", "hair_colour": "grey",
                      "hair_length": "bald", "skin": "dark", "glasses": True, "beard": False}}]}
  y = attribute_labels(gt)
  assert y.dtype == np.int32 and y.shape == (len(att.ATTRIBUTE_VALUES),)
  read = {a: values[i] for (a, values), i in zip(att.ATTRIBUTE_VALUES.items(), y)}
  assert read == {"gender": "woman", "age": "elderly", "hair_colour": "grey",
                  "hair_length": "bald", "skin": "dark", "glasses": "yes", "beard": "no"}


def test_attribute_scores_per_frame_and_per_clip_against_the_prior():
  """Clip 0's two frames disagree on gender; their mean logit decides. The
  prior is the majority value's share of the clips, not of the frames."""
  n_attr = len(att.ATTRIBUTE_VALUES)
  clip_n = np.array([0, 0, 1, 2])
  y_na = np.zeros((4, n_attr), np.int32)
  y_na[clip_n == 2, 0] = 1                          # gender: clips 0, 1 man, clip 2 woman
  z_nc = np.zeros((4, att.NUM_CLASSES), np.float32)
  z_nc[0, 0], z_nc[1, 1] = 3.0, 1.0                 # frame 0 says man (strongly), frame 1 woman
  z_nc[2, 1] = 1.0                                  # clip 1: woman (wrong)
  z_nc[3, 1] = 1.0                                  # clip 2: woman (right)
  r = attribute_scores(z_nc, y_na, clip_n)["gender"]
  assert r["frame_accuracy"] == 0.5 and r["clip_accuracy"] == 2 / 3
  assert r["prior"] == 2 / 3 and r["clips"] == 3
