"""What the training heads read on held-out clips (facetrack_jax/head_readout.py)."""

import math

import numpy as np

from facetrack_jax import attribute_supervision as at
from facetrack_jax import event_supervision as es
from facetrack_jax import head_readout as hr


def test_roc_auc():
  y = np.array([0, 0, 1, 1, 0, 1])
  s = np.array([0.1, 0.2, 0.8, 0.9, 0.3, 0.7])
  assert hr.roc_auc(s, y) == 1.0 and hr.roc_auc(-s, y) == 0.0
  # One positive ranked below one negative of 3 x 3 pairs.
  assert math.isclose(hr.roc_auc(np.array([0.1, 0.2, 0.8, 0.9, 0.75, 0.7]), y), 8 / 9)
  rng = np.random.default_rng(0)
  assert abs(hr.roc_auc(rng.random(4000), rng.random(4000) < 0.3) - 0.5) < 0.03
  assert math.isnan(hr.roc_auc(s, np.zeros(6)))


def test_attribute_scores_against_the_references_values():
  """Gender read right on 3 of 4 stated clips (prior 2/4 'man'); glasses
  stated nowhere -> None."""
  n = 5
  logits = np.zeros((n, at.NUM_CLASSES), np.float32)
  targets = np.full((n, len(at.ATTRIBUTE_VALUES)), -1, np.int32)
  g, gl = list(at.ATTRIBUTE_VALUES).index("gender"), list(at.ATTRIBUTE_VALUES).index("glasses")
  targets[:4, g] = [0, 0, 1, 1]                   # man, man, woman, woman; clip 4 unstated
  for i, v in enumerate([0, 0, 1, 0, 1]):         # the head says man, man, woman, man, woman
    logits[i, at.OFFSETS[g] + v] = 3.0
  r = hr.attribute_scores(logits, targets)
  assert r["gender"] == {"n": 4, "accuracy": 0.75, "prior": 0.5, "lift": 0.25}
  assert r["glasses"] == {"n": 0, "accuracy": None, "prior": None, "lift": None}
  assert set(r) == set(at.ATTRIBUTE_VALUES)


def test_event_scores_read_each_phases_max_frame():
  """A head whose logit fires in the right phase's frames scores AUC 1 for
  that event; an event whose logit ignores the targets scores about 0.5."""
  rng = np.random.default_rng(1)
  n, t, e = 200, 8, len(es.EVENT_KEYS)
  y_npe = (rng.random((n, es.NUM_PHASES, e)) < 0.2).astype(np.float32)
  z_nte = rng.normal(size=(n, t, e)).astype(np.float32) * 0.1
  k = es.EVENT_KEYS.index("mouth_smile")
  phase_t = es.phase_of_frames(t)
  z_nte[:, :, k] += 5.0 * y_npe[:, phase_t, k]     # the smile logit knows the phase
  r = hr.event_scores(z_nte, y_npe)
  assert r["mouth_smile"]["auc"] == 1.0
  assert r["mouth_smile"]["n_pos"] == int(y_npe[:, :, k].sum())
  others = [v["auc"] for key, v in r.items() if key != "mouth_smile"]
  assert abs(np.mean(others) - 0.5) < 0.05


def test_heads_table_sets_the_heads_beside_the_captions():
  result = {"attribute": {"gender": {"n": 4, "accuracy": 0.75, "prior": 0.5, "lift": 0.25}},
            "event": {"mouth_smile": {"n_pos": 7, "auc": 0.9}}}
  captions = {"attribute": {"gender": {"lift": 0.1}}, "event": {"mouth_smile": {"lift": -0.05}}}
  text = hr.heads_table(result, captions)
  assert "| gender | 4 | 0.50 | 0.75 (+0.25) | +0.10 |" in text
  both = dict(result, face_attribute={"gender": {"n": 4, "accuracy": 1.0, "prior": 0.5,
                                                 "lift": 0.5}})
  assert "| gender | 4 | 0.50 | 0.75 (+0.25) | 1.00 (+0.50) | +0.10 |" in hr.heads_table(
      both, captions)
  assert "| mouth_smile | 7 | 0.900 | -0.05 |" in text
