"""Per-event breakdown: perfect predictions, video-blind predictions, phase errors."""

import numpy as np
import pytest

from data_prep.synthetic import captions, script
from facetrack_jax.events import PHASE_PHRASES, PHASES
from facetrack_jax.metrics.breakdowns import event_breakdown, event_table


@pytest.fixture(scope="module")
def refs():
  rng = np.random.default_rng(3)
  return {f"c{i}": captions.write_caption(script.sample_clip_script(rng, num_frames=16), rng)
          for i in range(60)}


def test_perfect_predictions_recall_everything(refs):
  b = event_breakdown(refs, refs)
  assert len(b) >= 10
  for k, r in b.items():
    assert r["recall"] == 1.0 and r["recall_in_phase"] == 1.0, k
    assert r["n_pred"] == r["n_ref"] and r["lift"] == pytest.approx(1 - r["n_ref"] / len(refs))
  assert "| event |" in event_table(b)


def test_a_video_blind_model_has_zero_lift(refs):
  """The same caption for every clip: each event is named at its prior rate."""
  constant = next(iter(refs.values()))
  b = event_breakdown({i: constant for i in refs}, refs)
  for k, r in b.items():
    assert r["predicted_rate"] in (0.0, 1.0)
    assert r["lift"] == pytest.approx(0.0), k


def test_events_in_the_wrong_phase_count_only_without_phase(refs):
  first, last = PHASE_PHRASES[PHASES[0]], PHASE_PHRASES[PHASES[-1]]
  def move(c):   # the events of the first phase told as the last phase's
    return c.replace(first, "@@").replace(last, first).replace("@@", last)
  b = event_breakdown({i: move(c) for i, c in refs.items()}, refs)
  assert all(r["recall"] == 1.0 for r in b.values())
  assert np.mean([r["recall_in_phase"] for r in b.values()]) < 0.9


def test_no_common_id_is_an_error():
  with pytest.raises(ValueError, match="no id"):
    event_breakdown({"a": "x"}, {"b": "y"})
