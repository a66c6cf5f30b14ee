"""The appearance-attribute reader (``judge_offline.read_attributes``) on
generated and real captions, and the per-attribute breakdown's arithmetic."""

import json
from collections import Counter

import numpy as np
import pytest

from data_prep.synthetic import captions, people, script
from facetrack_jax.metrics.appearance_lexicon import ATTRIBUTES
from facetrack_jax.metrics.breakdowns import attribute_breakdown, breakdown_sections, breakdowns
from facetrack_jax.metrics.judge_offline import read_attributes
from tests.conftest import SHARED

FECBENCH = SHARED / "fecbench" / "test_dev_half.json"


def _written(attrs: dict, caption: str) -> dict:
  """What the generator wrote of the main character's attributes: all of
  them, but skin only when it wrote "<tone> skin" and the hair colour of a
  bald head only when it wrote "... hair at the sides"."""
  yes_no = lambda b: "yes" if b else "no"
  bald = attrs["hair_length"] == "bald"
  return {"gender": attrs["gender"], "age": attrs["age"],
          "hair_colour": attrs["hair_colour"] if not bald or "hair at the sides" in caption else None,
          "hair_length": attrs["hair_length"],
          "skin": attrs["skin"] if f"{attrs['skin']} skin" in caption else None,
          "glasses": yes_no(attrs["glasses"]), "beard": yes_no(attrs["beard"])}


@pytest.fixture(scope="module")
def generated():
  """400 generated captions with what each wrote: [(caption, written)]."""
  rng = np.random.default_rng(21)
  out = []
  for _ in range(400):
    clip = script.sample_clip_script(rng, num_frames=16)
    text = captions.write_caption(clip, rng)
    out.append((text, _written(clip.main_person.attributes, text)))
  return out


def test_reader_reads_back_every_generated_attribute(generated):
  tp, n_written, n_read = Counter(), Counter(), Counter()
  seen = {a: set() for a in ATTRIBUTES}
  wrong = []
  for text, written in generated:
    got = read_attributes(text)
    assert set(got) == set(ATTRIBUTES)
    for a in ATTRIBUTES:
      n_written[a] += written[a] is not None
      n_read[a] += got[a] is not None
      tp[a] += written[a] is not None and got[a] == written[a]
      seen[a].add(written[a])
      if got[a] != written[a] and len(wrong) < 5:
        wrong.append((a, got[a], written[a], text[:160]))
  for a in ATTRIBUTES:
    print(f"{a}: recall {tp[a] / n_written[a]:.3f}, precision {tp[a] / n_read[a]:.3f} "
          f"({n_written[a]} written)")
  assert all(tp[a] == n_written[a] == n_read[a] for a in ATTRIBUTES), wrong
  # Every value the generator can draw was drawn, and some attributes were left unwritten.
  assert seen["hair_colour"] >= set(people.HAIR) | {None} and seen["skin"] >= set(people.SKIN) | {None}
  assert seen["age"] == set(people.AGES) and seen["hair_length"] == {"long", "short", "bald"}
  assert seen["gender"] == {"man", "woman"} and seen["glasses"] == seen["beard"] == {"yes", "no"}


# Hand-read from the preambles of FEC-Bench test captions (shared/fecbench).
FECBENCH_GOLD = {
    "4": dict(gender="man", age="young", hair_colour=None, hair_length="short", skin="fair"),  # "dark short hair"
    "8": dict(gender="woman", age=None, hair_colour="black", hair_length="long", skin=None),
    "10": dict(gender="woman", age="young", hair_colour="dark brown", hair_length=None, skin="fair"),
    "18": dict(gender="man", age="middle-aged", hair_colour="brown", hair_length="short", beard="yes"),
    "46": dict(gender="woman", age="young", hair_colour="red", hair_length="short", skin=None),
    "60": dict(gender="woman", age="middle-aged", hair_colour=None, hair_length="medium", skin="brown"),
    "98": dict(gender="woman", age="young", hair_length="medium", skin="fair"),  # "of shoulder length"
    "156": dict(gender="man", hair_colour="black", hair_length="short"),          # "a balding crown"
    "188": dict(gender="man", age="elderly", hair_colour="grey", skin=None),
    "236": dict(gender="woman", age="young", hair_colour="black", hair_length="medium"),  # a man and a woman
    "324": dict(gender="woman", age="young", hair_colour="dark brown", skin="fair", glasses="yes"),  # sunglasses
    "468": dict(gender="man", skin="dark", hair_colour="black", beard="yes", glasses="no"),  # mustache
}


def test_reader_on_fecbench_captions():
  if not FECBENCH.exists():
    pytest.skip(f"FEC-Bench captions not found at {FECBENCH} (shared/ is absent)")
  data = json.loads(FECBENCH.read_text())
  reads = {x["id"]: read_attributes(x["caption"]) for x in data}
  for i, expected in FECBENCH_GOLD.items():
    assert {a: reads[i][a] for a in expected} == expected, i
  stated = {a: sum(r[a] is not None for r in reads.values()) for a in ATTRIBUTES}
  print(f"\n{len(data)} FEC-Bench captions state: {stated}; glasses yes "
        f"{sum(r['glasses'] == 'yes' for r in reads.values())}, beard yes "
        f"{sum(r['beard'] == 'yes' for r in reads.values())}")
  assert stated["gender"] == len(data)
  assert stated["age"] >= 0.9 * len(data) and stated["hair_length"] >= 0.65 * len(data)
  assert stated["hair_colour"] >= 0.7 * len(data) and stated["skin"] >= 0.15 * len(data)
  # An independent check of gender: the pronouns the rest of the caption uses.
  from facetrack_jax.metrics.appearance_lexicon import _pronoun_gender
  by_pronoun = {x["id"]: _pronoun_gender(x["caption"].lower()) for x in data}
  both = [i for i in reads if by_pronoun[i]]
  assert len(both) >= 0.95 * len(data)
  assert sum(reads[i]["gender"] == by_pronoun[i] for i in both) >= 0.99 * len(both)


def test_negation_and_captions_without_a_preamble():
  r = read_attributes("A middle-aged man without glasses, clean-shaven, with fair-skinned cheeks. "
                      "At the beginning of the video, he nods.")
  assert (r["gender"], r["age"], r["glasses"], r["beard"], r["skin"]) == ("man", "middle-aged", "no", "no", "fair")
  r = read_attributes("At the beginning of the video, she blinks. Towards the end of the video, she smiles.")
  assert r == {**dict.fromkeys(ATTRIBUTES), "gender": "woman"}
  r = read_attributes("A young woman in her sixties with hair clips. At the beginning, she adjusts her glasses.")
  assert (r["age"], r["hair_colour"], r["glasses"]) == ("young", None, "yes")   # the first age cue wins
  with pytest.raises(TypeError, match="caption must be a str"):
    read_attributes(None)


REFS = {"1": "A young man with short black hair. At the beginning of the video, he blinks.",
        "2": "A young man with short brown hair and glasses. At the beginning of the video, he nods.",
        "3": "An elderly man with short grey hair and a beard. At the beginning of the video, he smiles.",
        "4": "A young woman with long black hair and fair skin. At the beginning of the video, she blinks."}
PREDS = {"1": REFS["1"],
         "2": "A young woman with long brown hair. At the beginning of the video, she nods.",
         "3": "At the beginning of the video, he nods.",     # states only the gender (pronouns)
         "4": "A middle-aged woman with long black hair and light skin. At the beginning, she blinks.",
         "5": "An extra clip with no reference."}


def test_accuracy_prior_and_lift_on_constructed_pairs():
  b = attribute_breakdown(PREDS, REFS)
  assert list(b) == list(ATTRIBUTES)
  expected = {  # (clips stated by ref, accuracy, majority, prior, share of clips the prediction states it)
      "gender": (4, 3 / 4, "man", 3 / 4, 1.0), "age": (4, 2 / 4, "young", 3 / 4, 3 / 4),
      "hair_colour": (4, 3 / 4, "black", 2 / 4, 3 / 4), "hair_length": (4, 2 / 4, "short", 3 / 4, 3 / 4),
      "skin": (1, 0.0, "fair", 1.0, 1 / 4), "glasses": (4, 2 / 4, "no", 3 / 4, 3 / 4),
      "beard": (4, 3 / 4, "no", 3 / 4, 3 / 4)}
  for a, (n_ref, acc, majority, prior, rate) in expected.items():
    r = b[a]
    assert (r["n_ref"], r["majority"]) == (n_ref, majority), a
    assert r["accuracy"] == pytest.approx(acc) and r["prior"] == pytest.approx(prior), a
    assert r["lift"] == pytest.approx(acc - prior) and r["stated_rate"] == pytest.approx(rate), a
  assert b["hair_colour"]["ref_values"] == {"black": 2, "brown": 1, "grey": 1}
  # Right when said: clip 3 states no age, so age is 2 of the 3 clips both state.
  assert b["age"]["accuracy_when_stated"] == pytest.approx(2 / 3)
  assert b["skin"]["accuracy_when_stated"] == 0.0 and b["gender"]["accuracy_when_stated"] == 0.75
  none = attribute_breakdown({"1": PREDS["1"]}, {"1": REFS["1"]})["skin"]   # no reference states skin
  assert none["n_ref"] == 0 and none["accuracy"] is None and none["lift"] is None
  assert none["accuracy_when_stated"] is None
  with pytest.raises(ValueError, match="no id"):
    attribute_breakdown({"a": "x"}, {"b": "y"})


def test_perfect_and_video_blind_predictions(generated):
  refs = {f"c{k}": text for k, (text, _) in enumerate(generated)}
  perfect = attribute_breakdown(refs, refs)
  for a, r in perfect.items():
    assert r["accuracy"] == 1.0 and r["lift"] == pytest.approx(1 - r["prior"]), a
    assert r["accuracy_when_stated"] == 1.0, a
  constant = next(iter(refs.values()))      # the same caption for every clip
  said = read_attributes(constant)
  for a, r in attribute_breakdown({i: constant for i in refs}, refs).items():
    share = r["ref_values"].get(said[a], 0) / r["n_ref"] if said[a] else 0.0
    assert r["accuracy"] == pytest.approx(share) and r["lift"] <= 1e-12, a
    assert r["lift"] == pytest.approx(0.0) or said[a] != r["majority"], a


def test_report_sections_hold_both_tables(generated):
  refs = {f"c{k}": text for k, (text, _) in enumerate(generated[:20])}
  text = breakdown_sections(breakdowns(refs, refs))
  assert "## Per event" in text and "| event |" in text
  assert "## Per attribute" in text and "| attribute | clips (ref) | accuracy | majority | prior | lift |" in text
  assert "| gender | 20 | 1.00 |" in text
