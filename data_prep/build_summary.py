"""The build summary: built from the per-clip records of ``clip_job.run_job``,
written as ``build_summary.json`` by the builder and printed by the CLI."""

from __future__ import annotations

import collections
from typing import Mapping

import numpy as np


def _add_numbers(total: dict, stats: Mapping) -> None:
  """Sums numeric leaves of ``stats`` into ``total`` (nested dicts kept)."""
  for k, v in stats.items():
    if isinstance(v, Mapping):
      _add_numbers(total.setdefault(k, {}), v)
    elif isinstance(v, (int, float)) and not isinstance(v, bool):
      total[k] = total.get(k, 0) + v


def summarize(records: list[dict], *, dataset: str, path: str,
              wall_seconds: float, dropped_splits: list[str] = ()) -> dict:
  """The build summary: counts, skip reasons, pipeline totals, accuracy."""
  ok = [r for r in records if r["ok"]]
  bad = [r for r in records if not r["ok"]]
  splits = collections.defaultdict(lambda: {"ok": 0, "skipped": 0})
  for r in records:
    splits[r["split"]]["ok" if r["ok"] else "skipped"] += 1
  totals: dict = {}
  for r in ok:
    _add_numbers(totals, r["stats"])
  scored = [r["score"] for r in ok if r["score"]]
  track = None
  if scored:
    track = {"clips_with_ground_truth": len(scored),
             "main_correct_pct": 100.0 * float(np.mean([s["main_correct"] for s in scored])),
             "mean_iou": float(np.mean([s["mean_iou"] for s in scored])),
             "tracks_mixed": int(sum(s.get("tracks_mixed", 0) for s in scored))}
    cut = [s for s in scored if "cuts_true" in s]
    if cut:
      hit, true = sum(s["cuts_hit"] for s in cut), sum(s["cuts_true"] for s in cut)
      false, found = sum(s["cuts_false"] for s in cut), sum(s["cuts_found"] for s in cut)
      track.update(cut_recall=hit / true if true else 1.0,
                   false_cut_pct=100.0 * false / found if found else 0.0)
  links = [d for r in ok for d in (r.get("identity") or {}).get("links", [])]
  dist = {(r.get("identity") or {}).get("distance") for r in ok} - {None}
  return {
      "dataset": dataset, "path": path,
      "clips_total": len(records), "clips_ok": len(ok), "clips_skipped": len(bad),
      "splits": dict(splits), "dropped_splits": list(dropped_splits),
      "skipped_by_stage": dict(collections.Counter(r["stage"] for r in bad)),
      "skipped_by_reason": dict(collections.Counter(
          f"{r['stage']}: {r['reason']}" for r in bad).most_common()),
      "frames_decoded": totals.pop("frames_decoded", 0),
      "detections": totals.pop("detections", 0),
      "seconds_per_stage": totals.pop("seconds", {}),
      "pipeline_totals": totals,   # the other numeric ClipResult.stats, summed
      "track_selection": track,
      "identity": {"descriptor_distance": sorted(dist), "people_relinked": len(links),
                   "largest_link_distance": max(links, default=None)},
      "clip_seconds": float(sum(r["seconds"] for r in records)),
      "wall_seconds": wall_seconds,
  }


def format_summary(s: dict) -> str:
  lines = [f"{s['dataset']}: {s['clips_ok']} of {s['clips_total']} clips built, "
           f"{s['clips_skipped']} skipped  ({s['path']})"]
  for split, c in sorted(s["splits"].items()):
    lines.append(f"  split {split}: {c['ok']} ok, {c['skipped']} skipped"
                 + ("  [dropped: no usable clip]" if split in s["dropped_splits"] else ""))
  for reason, n in s["skipped_by_reason"].items():
    lines.append(f"  skipped {n:4d} x {reason}")
  lines.append(f"  frames decoded {s['frames_decoded']}, detections {s['detections']}, "
               + ", ".join(f"{k} {v}" for k, v in sorted(s["pipeline_totals"].items())
                           if not isinstance(v, dict)))
  lines.append("  seconds per stage: " + ", ".join(
      f"{k} {v:.2f}" for k, v in s["seconds_per_stage"].items()))
  t = s["track_selection"]
  if t:
    lines.append(f"  track selection on {t['clips_with_ground_truth']} clips with ground "
                 f"truth: main correct {t['main_correct_pct']:.1f}%, mean IoU {t['mean_iou']:.3f}")
    if t.get("tracks_mixed"):
      lines.append(f"  tracks holding two people: {t['tracks_mixed']}")
    if "cut_recall" in t:
      lines.append(f"  shot cuts: recall {t['cut_recall']:.3f}, false {t['false_cut_pct']:.1f}%")
  ident = s.get("identity") or {}
  if ident.get("descriptor_distance"):
    lines.append(f"  identity: face descriptors, distance <= {ident['descriptor_distance']}, "
                 f"{ident['people_relinked']} people re-linked across gaps or cuts (largest "
                 f"distance {ident['largest_link_distance']})")
  lines.append(f"  wall {s['wall_seconds']:.1f} s, clip processing {s['clip_seconds']:.1f} s")
  return "\n".join(lines)
