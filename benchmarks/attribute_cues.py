r"""How far do the synthetic faces' coarse cues name gender and age?

    python -m benchmarks.attribute_cues \
        --ground-truth data/tfds/downloads/facetrack_synthetic_n1320_seed0/ground_truth \
        [--num-train 1200] [--out benchmarks/results/attribute_cues.json]

A check of the DATA, not of a model. The generator (``data_prep/synthetic/``)
draws a woman with brows two thirds as thick and a heavier lash line, lipstick
on 40 % of women, a beard on 35 % of men, hair length drawn by gender (and age:
only older men are bald); age with hair colour (grey / white), nasolabial folds
and forehead lines, all thin lines at the face crops' 32 px. An observer that
reads a set of cues exactly and nothing else (a lookup from the cues' values
to the train clips' majority answer) is scored on the test clips: the best any
model can do with those cues alone on this set. Where a captioner names an
attribute about as often as the coarse cues allow, the rest is in the thin
lines. Writes ``<out>`` (JSON) and a Markdown table beside it.
"""

from __future__ import annotations

import argparse
import collections
import json
import pathlib
import sys

import numpy as np

from benchmarks.common import write_result
from data_prep.synthetic.people import plain_lip_rgb

# attribute -> {cue set label: cue names}
CUE_SETS = {
    "gender": {
        "lipstick, beard": ("lipstick", "beard"),
        "lipstick, beard, hair length": ("lipstick", "beard", "hair_length"),
        "lipstick, beard, hair length, age": ("lipstick", "beard", "hair_length", "age"),
    },
    "age": {
        "hair colour": ("hair_colour",),
        "hair colour, hair length": ("hair_colour", "hair_length"),
        "hair colour, hair length, gender": ("hair_colour", "hair_length", "gender"),
    },
}


def cues(attributes: dict) -> dict:
  """The main character's cue values: its caption attributes and ``lipstick``
  (its lips are not the colour the generator derives from the skin)."""
  plain = plain_lip_rgb(np.asarray(attributes["skin_rgb"], np.float64))
  lipstick = bool(np.abs(np.asarray(attributes["lip_rgb"]) - plain).max() > 1)
  return {**attributes, "lipstick": lipstick}


def cue_accuracy(train: list[dict], test: list[dict], target: str, names: tuple) -> float:
  """Accuracy on ``test`` of the train clips' majority ``target`` for each
  combination of the ``names`` cues (the overall majority where a combination
  never occurs in train)."""
  key = lambda c: tuple(str(c[n]) for n in names)
  by_key = collections.defaultdict(collections.Counter)
  for c in train:
    by_key[key(c)][c[target]] += 1
  overall = collections.Counter(c[target] for c in train).most_common(1)[0][0]
  guess = {k: counts.most_common(1)[0][0] for k, counts in by_key.items()}
  return float(np.mean([guess.get(key(c), overall) == c[target] for c in test]))


def load(gt_dir: pathlib.Path) -> list[dict]:
  """The main character's :func:`cues` of every clip, in clip-id order."""
  files = sorted(gt_dir.glob("*.json"))
  if not files:
    raise FileNotFoundError(f"--ground-truth {gt_dir}: no clip *.json files there")
  out = []
  for f in files:
    gt = json.loads(f.read_text())
    out.append(cues(gt["faces"][gt["main"]]["attributes"]))
  return out


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog="python -m benchmarks.attribute_cues",
                              description=__doc__.split("\n\n")[0])
  p.add_argument("--ground-truth", required=True, help="the synthetic set's ground_truth/")
  p.add_argument("--num-train", type=int, default=1200,
                 help="the first N clips are the train split (the builder's order)")
  p.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"
                                      / "attribute_cues.json"))
  a = p.parse_args(argv)
  clips = load(pathlib.Path(a.ground_truth))
  if not 0 < a.num_train < len(clips):
    p.error(f"--num-train {a.num_train}: the set has {len(clips)} clips")
  train, test = clips[:a.num_train], clips[a.num_train:]
  rows = {}
  for target, sets in CUE_SETS.items():
    prior = collections.Counter(c[target] for c in test).most_common(1)[0][1] / len(test)
    rows[target] = {"prior": prior, "cues": {label: cue_accuracy(train, test, target, names)
                                             for label, names in sets.items()},
                    "cues_all_clips": {label: cue_accuracy(clips, clips, target, names)
                                       for label, names in sets.items()}}
  result = {"ground_truth": str(a.ground_truth), "train_clips": len(train),
            "test_clips": len(test), "attributes": rows}
  lines = [f"# What the coarse cues tell: {pathlib.Path(a.ground_truth).parent.name}\n",
           f"{len(train)} train / {len(test)} test clips (main character); accuracy on the "
           "test clips of the train clips' majority answer for each combination of the "
           "cues, against the majority answer alone; and the same lookup fitted and "
           "scored on all clips (in sample: a steadier figure, the cells are few).\n",
           "| attribute | cues read exactly | test accuracy | test prior | all clips |",
           "|---|---|---|---|---|"]
  for target, r in rows.items():
    lines += [f"| {target} | {label} | {acc:.3f} | {r['prior']:.3f} | "
              f"{r['cues_all_clips'][label]:.3f} |" for label, acc in r["cues"].items()]
  return write_result(a.out, result, lines)


if __name__ == "__main__":
  sys.exit(main())
