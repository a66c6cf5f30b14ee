r"""Does a caption name an event when the visual tokens carry it?

    python -m benchmarks.lift_vs_auc RUN... [--head event] \
        [--out benchmarks/results/lift_vs_auc.json]

Each RUN is an evaluation folder (``W/eval/<step>/``, with ``heads.json`` and
``per_event.json``) or the prefix of a pair of copies
(``benchmarks/results/heads/<run>.heads.json`` and ``<run>.per_event.json``).
For every run and event kind it pairs what a trained head reads off the same
held-out clips (``--head``: ``event`` reads the visual tokens the LM sees,
``face_event`` the face tower's output; ROC AUC over clips × phases) with the
captions' lift for that event (recall − predicted rate). Writes the pairs,
a table by AUC band, the Spearman rank correlation (JSON and Markdown) and a
scatter (PNG) beside ``<out>``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np
from scipy import stats

from benchmarks.common import write_result

MOUTH = ("mouth_talk", "mouth_smile", "mouth_frown", "lips_press", "mouth_open", "mouth_close")
BANDS = (0.0, 0.7, 0.85, 0.9, 0.95, 1.01)


def read_run(run: str, head: str) -> list[dict]:
  """``[{event, auc, lift}]`` of one run (events the head scores and the
  captions' table both list)."""
  path = pathlib.Path(run)
  if path.is_dir():
    heads_f, events_f = path / "heads.json", path / "per_event.json"
  else:
    heads_f, events_f = (pathlib.Path(f"{run}.heads.json"), pathlib.Path(f"{run}.per_event.json"))
  for f in (heads_f, events_f):
    if not f.is_file():
      raise FileNotFoundError(f"run {run!r}: no {f.name} at {f}")
  heads, events = json.loads(heads_f.read_text()), json.loads(events_f.read_text())
  if head not in heads:
    raise KeyError(f"run {run!r}: {heads_f} has no head {head!r} (it has {sorted(heads)})")
  return [{"event": k, "auc": float(v["auc"]), "lift": float(events[k]["lift"])}
          for k, v in heads[head].items()
          if k in events and np.isfinite(v.get("auc", np.nan))]


def bands(pairs: list[dict]) -> list[dict]:
  """Per AUC band: how many (run, event) pairs, their mean and min lift, and
  the share with lift >= 0.3."""
  out = []
  for lo, hi in zip(BANDS[:-1], BANDS[1:]):
    lifts = np.array([p["lift"] for p in pairs if lo <= p["auc"] < hi])
    if len(lifts):
      out.append({"auc_from": lo, "auc_to": min(hi, 1.0), "pairs": int(len(lifts)),
                  "mean_lift": float(lifts.mean()), "min_lift": float(lifts.min()),
                  "share_lift_ge_0.3": float(np.mean(lifts >= 0.3))})
  return out


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog="python -m benchmarks.lift_vs_auc",
                              description=__doc__.split("\n\n")[0])
  p.add_argument("runs", nargs="+", help="eval folders or results/heads/<run> prefixes")
  p.add_argument("--head", default="event", help="event (visual tokens) or face_event")
  p.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"
                                      / "lift_vs_auc.json"))
  a = p.parse_args(argv)
  pairs = [dict(r, run=run) for run in a.runs for r in read_run(run, a.head)]
  if len(pairs) < 3:
    p.error(f"{len(pairs)} (run, event) pairs: too few to compare")
  x = np.array([q["auc"] for q in pairs])
  y = np.array([q["lift"] for q in pairs])
  result = {"head": a.head, "runs": a.runs, "spearman": float(stats.spearmanr(x, y).statistic),
            "bands": bands(pairs),
            "pairs": pairs}
  lines = [f"# Caption lift against the `{a.head}` head's AUC ({len(a.runs)} runs)\n",
           f"{len(pairs)} (run, event) pairs; Spearman rank correlation "
           f"{result['spearman']:.2f}. Lift: recall − predicted rate of the event in the "
           "held-out captions; AUC: the head's, over clips × phases, on the same clips.\n",
           "| head AUC | pairs | mean lift | min lift | lift ≥ 0.3 |", "|---|---|---|---|---|"]
  lines += [f"| {b['auc_from']:.2f}–{b['auc_to']:.2f} | {b['pairs']} | {b['mean_lift']:+.2f} | "
            f"{b['min_lift']:+.2f} | {b['share_lift_ge_0.3']:.0%} |" for b in result["bands"]]
  by_event = {}
  for q in pairs:
    by_event.setdefault(q["event"], []).append(q)
  lines += ["", "| event | mean head AUC | mean lift |", "|---|---|---|"]
  for k, qs in sorted(by_event.items(), key=lambda kv: np.mean([q["auc"] for q in kv[1]])):
    lines.append(f"| {k} | {np.mean([q['auc'] for q in qs]):.2f} | "
                 f"{np.mean([q['lift'] for q in qs]):+.2f} |")
  write_result(a.out, result, lines)
  from facetrack_jax.report import plot_scatter
  plot_scatter({"mouth": [(q["auc"], q["lift"]) for q in pairs if q["event"] in MOUTH],
                "eyes, brows, gaze, head": [(q["auc"], q["lift"]) for q in pairs
                                            if q["event"] not in MOUTH]},
               pathlib.Path(a.out).with_suffix(".png"),
               title=f"caption lift vs {a.head} head AUC", x_label="head ROC AUC", y_label="lift")
  return 0


if __name__ == "__main__":
  sys.exit(main())
