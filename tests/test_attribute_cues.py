"""benchmarks/attribute_cues.py: the generator's lipstick read back from its
colours, and the majority lookup from cue values."""

import numpy as np

from benchmarks.attribute_cues import cue_accuracy, cues
from data_prep.synthetic.people import sample_attributes


def test_lipstick_is_read_from_the_generators_own_people():
  rng = np.random.default_rng(0)
  people = [cues(sample_attributes(rng)) for _ in range(2000)]
  men = [p for p in people if p["gender"] == "man"]
  women = [p for p in people if p["gender"] == "woman"]
  assert not any(p["lipstick"] for p in men)                 # the generator gives men none
  share = np.mean([p["lipstick"] for p in women])
  assert 0.36 < share < 0.44, share                          # 40 % of women


def test_cue_accuracy_is_the_train_majority_per_cue_value():
  train = ([{"beard": True, "gender": "man"}] * 3 + [{"beard": False, "gender": "woman"}] * 3
           + [{"beard": False, "gender": "man"}] * 2)
  test = [{"beard": True, "gender": "man"}, {"beard": False, "gender": "man"},
          {"beard": False, "gender": "woman"}, {"beard": False, "gender": "woman"}]
  # beard -> man, no beard -> woman (3 of 5): right on 1 + 0 + 1 + 1 test clips.
  assert cue_accuracy(train, test, "gender", ("beard",)) == 0.75
  # No cue: the overall majority (man, 5 of 8) for every clip.
  assert cue_accuracy(train, test, "gender", ()) == 0.5
  # A cue value never seen in train falls back to the overall majority.
  assert cue_accuracy(train, [{"beard": None, "gender": "man"}], "gender", ("beard",)) == 1.0
