"""Which facial events a model names right: a per-event breakdown.

For every event kind (``Event.key()``: part, action, direction; the phase
left out) found in the references by the offline judge's lexicon
(``judge_offline.extract_events``), over the clips whose reference has it:

* ``recall``: the prediction names the same kind too (any phase);
* ``recall_in_phase``: ... in the same phase;
* ``predicted_rate``: share of ALL clips whose prediction names it.

A model that ignores the video names an event at its prior rate, whatever
the clip: its ``recall`` then equals ``predicted_rate``. ``lift`` =
recall − predicted_rate is the part of the recall the video explains
(≈ 0 at chance, up to 1 − predicted_rate). Cheap (no judge calls), so every
evaluation writes it; it speaks of the offline lexicon's vocabulary only.
"""

from __future__ import annotations

from collections.abc import Mapping

from facetrack_jax.metrics.judge_offline import extract_events


def event_breakdown(preds: Mapping[str, str], refs: Mapping[str, str]) -> dict[str, dict]:
  """``{event key: {"n_ref", "n_pred", "recall", "recall_in_phase",
  "predicted_rate", "lift"}}`` over the ids of ``refs`` that ``preds`` has,
  most frequent reference events first."""
  ids = [i for i in refs if i in preds]
  if not ids:
    raise ValueError("event_breakdown: no id is in both predictions and references")
  n_ref, n_pred, hit, n_ref_phased, hit_phase = {}, {}, {}, {}, {}
  for i in ids:
    ref = extract_events(refs[i])
    pred = extract_events(preds[i])
    pred_kinds = {e.key() for e in pred}
    pred_phased = {(e.key(), e.phase) for e in pred}
    for k in pred_kinds:
      n_pred[k] = n_pred.get(k, 0) + 1
    for k in {e.key() for e in ref}:
      n_ref[k] = n_ref.get(k, 0) + 1
      hit[k] = hit.get(k, 0) + (k in pred_kinds)
    for kp in {(e.key(), e.phase) for e in ref}:
      n_ref_phased[kp[0]] = n_ref_phased.get(kp[0], 0) + 1
      hit_phase[kp[0]] = hit_phase.get(kp[0], 0) + (kp in pred_phased)
  out = {}
  for k in sorted(n_ref, key=lambda k: (-n_ref[k], k)):
    rate = n_pred.get(k, 0) / len(ids)
    recall = hit[k] / n_ref[k]
    out[k] = {"n_ref": n_ref[k], "n_pred": n_pred.get(k, 0), "recall": recall,
              "recall_in_phase": hit_phase.get(k, 0) / n_ref_phased[k],
              "predicted_rate": rate, "lift": recall - rate}
  return out


def breakdown_table(breakdown: Mapping[str, Mapping]) -> str:
  """Markdown table of :func:`event_breakdown`."""
  lines = ["| event | clips (ref) | clips (pred) | recall | in phase | predicted rate | lift |",
           "|---|---|---|---|---|---|---|"]
  for k, r in breakdown.items():
    lines.append(f"| {k} | {r['n_ref']} | {r['n_pred']} | {r['recall']:.2f} | "
                 f"{r['recall_in_phase']:.2f} | {r['predicted_rate']:.2f} | {r['lift']:+.2f} |")
  return "\n".join(lines) + "\n"
