"""What a model gets right, broken down: per facial event and per
appearance attribute, read from both captions by the offline judge's
lexicon (cheap, no judge calls: every evaluation and ``metrics.score``
writes them; they speak of the lexicon's vocabulary only).

Each breakdown is ``{name: row}``, written as ``per_<kind>.json``
(:func:`write_breakdowns`) and drawn as a table in ``report.md``
(:func:`breakdown_sections`), both from :data:`BREAKDOWNS`.

**Per event** (:func:`event_breakdown`): for every event kind
(``Event.key()``: part, action, direction; the phase left out) found in the
references (``judge_offline.extract_events``), over the clips whose
reference has it:

* ``recall``: the prediction names the same kind too (any phase);
* ``recall_in_phase``: ... in the same phase;
* ``predicted_rate``: share of ALL clips whose prediction names it.

A model that ignores the video names an event at its prior rate, whatever
the clip: its ``recall`` then equals ``predicted_rate``. ``lift`` =
recall − predicted_rate is the part of the recall the video explains
(≈ 0 at chance, up to 1 − predicted_rate).

**Per attribute** (:func:`attribute_breakdown`): for every attribute of
``appearance_lexicon.ATTRIBUTES`` (``judge_offline.read_attributes``), over
the clips whose reference states it:

* ``accuracy``: the prediction states the same value (unstated = wrong);
* ``prior``: the share of the most frequent reference value
  (``majority``): what always answering it scores;
* ``lift`` = accuracy − prior (≈ 0 for a model that answers the majority,
  up to 1 − prior);
* ``stated_rate``: share of ALL clips whose prediction states it at all;
* ``accuracy_when_stated``: over the clips where both captions state it, the
  share with the same value (None where there are none): right when said,
  apart from whether it is said (skin tone, stated in a third of the synthetic
  references at random, caps ``accuracy`` near its stated rate).
"""

from __future__ import annotations

import json
import os
from etils import epath
from collections import Counter
from collections.abc import Callable, Mapping

from facetrack_jax.metrics.appearance_lexicon import ATTRIBUTES
from facetrack_jax.metrics.judge_offline import extract_events, read_attributes


def _common_ids(preds: Mapping[str, str], refs: Mapping[str, str], who: str) -> list[str]:
  ids = [i for i in refs if i in preds]
  if not ids:
    raise ValueError(f"{who}: no id is in both predictions and references")
  return ids


def event_breakdown(preds: Mapping[str, str], refs: Mapping[str, str]) -> dict[str, dict]:
  """``{event key: {"n_ref", "n_pred", "recall", "recall_in_phase",
  "predicted_rate", "lift"}}`` over the ids of ``refs`` that ``preds`` has,
  most frequent reference events first."""
  ids = _common_ids(preds, refs, "event_breakdown")
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


def attribute_breakdown(preds: Mapping[str, str], refs: Mapping[str, str]) -> dict[str, dict]:
  """``{attribute: {"n_ref", "n_pred", "accuracy", "majority", "prior",
  "lift", "stated_rate", "accuracy_when_stated", "ref_values"}}`` for every attribute, in
  ``ATTRIBUTES`` order, over the ids of ``refs`` that ``preds`` has;
  accuracy, majority, prior and lift are None where no reference states it.
  ``ref_values``: {value: clips}, most frequent first."""
  ids = _common_ids(preds, refs, "attribute_breakdown")
  read_ref = {i: read_attributes(refs[i]) for i in ids}
  read_pred = {i: read_attributes(preds[i]) for i in ids}
  out = {}
  for a in ATTRIBUTES:
    stated = [i for i in ids if read_ref[i][a] is not None]
    values = Counter(read_ref[i][a] for i in stated)
    n_pred = sum(read_pred[i][a] is not None for i in ids)
    both = [i for i in stated if read_pred[i][a] is not None]
    row = {"n_ref": len(stated), "n_pred": n_pred, "accuracy": None, "majority": None, "prior": None,
           "lift": None, "stated_rate": n_pred / len(ids),
           "accuracy_when_stated": (sum(read_pred[i][a] == read_ref[i][a] for i in both) / len(both)
                                    if both else None),
           "ref_values": dict(sorted(values.items(), key=lambda kv: (-kv[1], kv[0])))}
    if stated:
      majority, count = next(iter(row["ref_values"].items()))
      accuracy = sum(read_pred[i][a] == read_ref[i][a] for i in stated) / len(stated)
      row.update(accuracy=accuracy, majority=majority, prior=count / len(stated),
                 lift=accuracy - count / len(stated))
    out[a] = row
  return out


def _cell(x, fmt: str) -> str:
  return "–" if x is None else format(x, fmt)


def _table(header: tuple[str, ...], rows: list[list[str]]) -> str:
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(r) + " |" for r in rows]
  return "\n".join(lines) + "\n"


def event_table(breakdown: Mapping[str, Mapping]) -> str:
  """Markdown table of :func:`event_breakdown`."""
  return _table(("event", "clips (ref)", "clips (pred)", "recall", "in phase", "predicted rate", "lift"),
                [[k, str(r["n_ref"]), str(r["n_pred"]), f"{r['recall']:.2f}", f"{r['recall_in_phase']:.2f}",
                  f"{r['predicted_rate']:.2f}", f"{r['lift']:+.2f}"] for k, r in breakdown.items()])


def attribute_table(breakdown: Mapping[str, Mapping]) -> str:
  """Markdown table of :func:`attribute_breakdown`."""
  return _table(("attribute", "clips (ref)", "accuracy", "majority", "prior", "lift", "stated by pred",
                 "accuracy when both state it"),
                [[k, str(r["n_ref"]), _cell(r["accuracy"], ".2f"), str(r["majority"] or "–"),
                  _cell(r["prior"], ".2f"), _cell(r["lift"], "+.2f"), f"{r['stated_rate']:.2f}",
                  _cell(r.get("accuracy_when_stated"), ".2f")]
                 for k, r in breakdown.items()])


# kind -> (compute, table, report heading); files are per_<kind>.json.
BREAKDOWNS: dict[str, tuple[Callable, Callable, str]] = {
    "event": (event_breakdown, event_table,
              "Per event (offline lexicon; lift = recall - predicted rate, 0 = chance)"),
    "attribute": (attribute_breakdown, attribute_table,
                  "Per attribute (offline lexicon; lift = accuracy - majority prior, 0 = majority)"),
}


def breakdowns(preds: Mapping[str, str], refs: Mapping[str, str]) -> dict[str, dict]:
  """``{kind: breakdown}`` for every kind of :data:`BREAKDOWNS`."""
  return {kind: compute(preds, refs) for kind, (compute, _, _) in BREAKDOWNS.items()}


def write_breakdowns(preds: Mapping[str, str], refs: Mapping[str, str],
                     out_dir: str | os.PathLike) -> dict[str, dict]:
  """:func:`breakdowns`, each written as ``out_dir/per_<kind>.json``."""
  out = breakdowns(preds, refs)
  for kind, b in out.items():
    (epath.Path(out_dir) / f"per_{kind}.json").write_text(json.dumps(b, indent=1) + "\n")
  return out


def breakdown_sections(by_kind: Mapping[str, Mapping]) -> str:
  """Markdown: one heading and table per kind of :func:`breakdowns` (empty ones left out)."""
  return "\n".join(f"## {BREAKDOWNS[kind][2]}\n\n{BREAKDOWNS[kind][1](b)}" for kind, b in by_kind.items() if b)
