"""Markdown reports and the loss-curve PNG.

* :func:`eval_report` — one evaluation (``evaluate.py``): the paper's columns
  (CIDEr, ROUGE-L, AutoDQ, TEM as fractions), a per-source breakdown, the
  clips without prediction, the per-event and per-attribute tables
  (``metrics.breakdowns``), a few predictions beside their references.
* :func:`demo_report` — the one-command demo (``main.py``): the above plus
  the loss curve, the data-prep summary (track-selection accuracy) and the
  time of every stage.
* :func:`plot_curve` — a training curve from ``metrics.jsonl``, and
  :func:`plot_points` — means ± std against a swept value (sweeps); drawn
  with OpenCV (already a dependency; no plotting library needed).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import numpy as np

from facetrack_jax import paths
from facetrack_jax.metrics.breakdowns import breakdown_sections

COLUMNS = ("CIDEr", "ROUGE-L", "AutoDQ", "TEM")


def _f(x: float) -> str:
  return f"{x:.3f}"


def metric_cells(m: Mapping) -> list[str]:
  """The paper's four columns of one ``score_captions`` result, as fractions."""
  return [_f(m["cider"]), _f(m["rouge_l"]), _f(m["autodq"]["f1"]), _f(m["tem"]["f1"])]


def metrics_table(rows: Sequence[tuple[str, Mapping]], first: str = "model") -> str:
  """Markdown table: one row per ``(name, metrics)`` with n and the four columns."""
  lines = [f"| {first} | n | " + " | ".join(COLUMNS) + " |",
           "|---|---:|" + "---:|" * len(COLUMNS)]
  for name, m in rows:
    lines.append(f"| {name} | {m['n']} | " + " | ".join(metric_cells(m)) + " |")
  return "\n".join(lines) + "\n"


def _pr(m: Mapping) -> str:
  a, t = m["autodq"], m["tem"]
  return (f"AutoDQ precision {_f(a['precision'])}, recall {_f(a['recall'])}; "
          f"TEM precision {_f(t['precision'])}, recall {_f(t['recall'])} "
          f"(judge: {m.get('judge', '?')}; TEM is our reconstruction of the paper's metric).")


def _one_line(text: str) -> str:
  return " ".join(str(text).split()).replace("|", "\\|")


def examples_section(examples: Sequence[Mapping]) -> str:
  """Predictions beside references: ``[{"id", "source", "caption", "reference"}]``."""
  out = []
  for e in examples:
    out.append(f"**{e['id']}** ({e.get('source', '?')})\n\n"
               f"- reference: {_one_line(e['reference'])}\n"
               f"- generated: {_one_line(e['caption'])}\n")
  return "\n".join(out)


def read_examples(eval_dir: str | os.PathLike, n: int = 5) -> list[dict]:
  """The first ``n`` clips (by id) of an evaluation folder
  (``predictions.json``, ``references.json``, ``per_clip.jsonl``):
  ``[{"id", "source", "caption", "reference"}]``."""
  import json
  d = paths.resolve(eval_dir)
  preds = json.loads((d / "predictions.json").read_text())
  refs = {r["id"]: r["caption"] for r in json.loads((d / "references.json").read_text())}
  sources = {}
  if (d / "per_clip.jsonl").exists():
    for line in (d / "per_clip.jsonl").read_text().splitlines():
      r = json.loads(line)
      sources[r["id"]] = r.get("source", "?")
  preds = sorted(preds, key=lambda p: p["id"])[:n]
  return [{"id": p["id"], "caption": p["caption"], "reference": refs.get(p["id"], "?"),
           "source": sources.get(p["id"], "?")} for p in preds]


def _missing(metrics: Mapping) -> str:
  ids = list(metrics.get("missing_ids", [])) + list(metrics.get("missing_in_pred", []))
  if not ids:
    return "Every clip of the split has a prediction.\n"
  shown = ", ".join(ids[:20]) + (" …" if len(ids) > 20 else "")
  return (f"**{len(ids)} clip(s) have a reference but no prediction** (skipped by the "
          f"data build; not scored): {shown}\n")


def eval_report(metrics: Mapping, examples: Sequence[Mapping],
                breakdowns: Mapping | None = None) -> str:
  """``report.md`` of one evaluation (``evaluate.evaluate``'s metrics and,
  if given, its ``breakdowns.breakdowns``: per event, per attribute)."""
  m = metrics
  name = f"step {m['step']}"
  parts = [
      f"# Evaluation: {m.get('dataset') or 'dataset'}, split `{m['split']}`, step {m['step']}\n",
      metrics_table([(name, m)]),
      _pr(m) + "\n",
      "## Per source\n",
      metrics_table([(s, v) for s, v in m["per_source"].items()], first="source"),
      "## Missing clips\n",
      _missing(m),
  ]
  if breakdowns:
    parts.append(breakdown_sections(breakdowns))
  parts += ["## Generated captions beside references\n", examples_section(examples)]
  return "\n".join(parts)


def demo_report(*, metrics: Mapping, examples: Sequence[Mapping], stages: Mapping[str, float],
                build_summary: Mapping | None, train_out: Mapping | None,
                loss_png: str | None, settings: Mapping) -> str:
  """``report.md`` of the one-command demo."""
  parts = [
      "# FaceTrack-MM demo on the synthetic face-video set\n",
      "Held-out synthetic clips, greedy decoding; metrics as fractions "
      "(the paper's columns).\n",
      metrics_table([(f"tiny FaceTrack-MM, step {metrics['step']}", metrics)]),
      _pr(metrics) + "\n",
  ]
  if loss_png:
    parts += ["## Training loss\n", f"![training loss]({loss_png})\n"]
  if train_out:
    parts.append(f"Final training loss {train_out.get('loss', float('nan')):.4f} at step "
                 f"{train_out.get('step')}.\n")
  parts += ["## Generated captions beside references\n", examples_section(examples)]
  if build_summary:
    s = build_summary
    lines = [f"- {s['dataset']}: {s['clips_ok']} of {s['clips_total']} clips built, "
             f"{s['clips_skipped']} skipped"]
    for split, c in sorted(s.get("splits", {}).items()):
      lines.append(f"  - split {split}: {c['ok']} ok, {c['skipped']} skipped")
    for reason, n in s.get("skipped_by_reason", {}).items():
      lines.append(f"  - skipped {n} × {reason}")
    t = s.get("track_selection")
    if t:
      lines.append(f"- track selection (main character vs the generator's ground truth, "
                   f"{t['clips_with_ground_truth']} clips): **{t['main_correct_pct']:.1f}% "
                   f"correct**, mean IoU {t['mean_iou']:.3f}")
    parts += ["## Data preparation (real detector path)\n", "\n".join(lines) + "\n"]
  parts += ["## Missing clips\n", _missing(metrics)]
  parts += ["## Stages\n", "| stage | seconds |\n|---|---:|\n" + "".join(
      f"| {k} | {v:.1f} |\n" for k, v in stages.items())]
  parts += ["## Settings\n", "".join(f"- {k}: `{v}`\n" for k, v in settings.items())]
  return "\n".join(parts)


# -- the loss curve -------------------------------------------------------------------
def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
  span = max(hi - lo, 1e-12)
  raw = span / n
  mag = 10 ** math.floor(math.log10(raw))
  step = min((m * mag for m in (1, 2, 5, 10) if m * mag >= raw), default=10 * mag)
  first = math.ceil(lo / step) * step
  return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _series(records: Sequence[Mapping], key: str) -> list[tuple[float, float]]:
  return [(float(r["step"]), float(r[key])) for r in records
          if key in r and isinstance(r[key], (int, float)) and math.isfinite(r[key])]


def plot_curve(records: Sequence[Mapping], out_png: str | os.PathLike, *, key: str = "loss",
               title: str = "training loss", size: tuple[int, int] = (720, 420),
               held_out: str = "eval_loss"):
  """Draws ``key`` over ``step`` of metric records (``metrics.jsonl`` lines)
  as a PNG: raw values (light) and an exponential moving average (dark), log
  y axis when every value is positive; the records' ``held_out`` values
  (e.g. the trainer's ``eval_loss``), where there are any, as orange points
  joined by a line on the same axes."""
  import cv2
  pts = _series(records, key)
  if len(pts) < 2:
    raise ValueError(f"plot_curve: need >= 2 finite {key!r} values, got {len(pts)}")
  extra = _series(records, held_out)
  steps, vals = np.array(pts).T
  log = bool((vals > 0).all()) and all(v > 0 for _, v in extra)
  ys = np.log10(vals) if log else vals
  ex_steps = np.array([s for s, _ in extra])
  ex_ys = np.array([math.log10(v) if log else v for _, v in extra])
  ema, acc, beta = np.empty_like(ys), ys[0], 1 - 1 / max(2.0, len(ys) / 50)
  for i, y in enumerate(ys):
    acc = beta * acc + (1 - beta) * y
    ema[i] = acc
  w, h = size
  left, right, top, bottom = 70, 20, 36, 48
  img = np.full((h, w, 3), 255, np.uint8)
  x0, x1 = steps.min(), max(steps.max(), steps.min() + 1)
  y0, y1 = min(ys.min(), ex_ys.min(initial=np.inf)), max(ys.max(), ex_ys.max(initial=-np.inf))
  if y1 - y0 < 1e-9:
    y0, y1 = y0 - 0.5, y1 + 0.5
  px = lambda s: int(left + (s - x0) / (x1 - x0) * (w - left - right))
  py = lambda y: int(top + (y1 - y) / (y1 - y0) * (h - top - bottom))
  font, black = cv2.FONT_HERSHEY_SIMPLEX, (0, 0, 0)
  # Grid and tick labels.
  if log:  # ticks at 1-2-5 x 10^k, or linear ticks of the values for a narrow range
    vticks = [m * 10.0 ** k for k in range(math.floor(y0), math.ceil(y1) + 1) for m in (1, 2, 5)]
    vticks = [v for v in vticks if y0 - 1e-9 <= math.log10(v) <= y1 + 1e-9]
    if len(vticks) < 3:
      vticks = [v for v in _nice_ticks(10 ** y0, 10 ** y1) if v > 0]
    yticks = [(math.log10(v), f"{v:.3g}") for v in vticks]
  else:
    yticks = [(y, f"{y:.3g}") for y in _nice_ticks(y0, y1)]
  xticks = [(px(s), f"{s:g}") for s in _nice_ticks(x0, x1)]
  _grid(img, [(py(y), label) for y, label in yticks if y0 - 1e-9 <= y <= y1 + 1e-9],
        xticks, (left, right, top, bottom))
  # Curves (OpenCV draws BGR).
  raw = np.stack([[px(s), py(y)] for s, y in zip(steps, ys)]).astype(np.int32)
  smooth = np.stack([[px(s), py(y)] for s, y in zip(steps, ema)]).astype(np.int32)
  cv2.polylines(img, [raw], False, (235, 206, 160), 1, cv2.LINE_AA)
  cv2.polylines(img, [smooth], False, (160, 70, 20), 2, cv2.LINE_AA)
  if len(extra):
    held = np.stack([[px(s), py(y)] for s, y in zip(ex_steps, ex_ys)]).astype(np.int32)
    orange = (0, 140, 255)
    cv2.polylines(img, [held], False, orange, 2, cv2.LINE_AA)
    for x, y in held:
      cv2.circle(img, (int(x), int(y)), 4, orange, -1, cv2.LINE_AA)
    cv2.putText(img, "held-out loss" if held_out == "eval_loss" else held_out,
                (w - right - 130, 24), font, 0.5, orange, 1, cv2.LINE_AA)
  cv2.putText(img, title + (" (log scale)" if log else ""), (left, 24), font, 0.55, black, 1,
              cv2.LINE_AA)
  cv2.putText(img, "step", (w // 2, h - 10), font, 0.45, black, 1, cv2.LINE_AA)
  return _write_png(img, out_png, "plot_curve")


def _grid(img, yticks, xticks, margins) -> None:
  """Grey grid lines with labels at pixel rows ``yticks`` / columns
  ``xticks`` (``[(pixel, label)]``) and the plot's frame."""
  import cv2
  h, w = img.shape[:2]
  left, right, top, bottom = margins
  font, grey, black = cv2.FONT_HERSHEY_SIMPLEX, (200, 200, 200), (0, 0, 0)
  for y, label in yticks:
    cv2.line(img, (left, y), (w - right, y), grey, 1)
    cv2.putText(img, label, (4, y + 4), font, 0.4, black, 1, cv2.LINE_AA)
  for x, label in xticks:
    cv2.line(img, (x, top), (x, h - bottom), grey, 1)
    cv2.putText(img, label, (x - 4 * len(label), h - bottom + 16), font, 0.4, black, 1,
                cv2.LINE_AA)
  cv2.rectangle(img, (left, top), (w - right, h - bottom), black, 1)


def _write_png(img, out_png, what: str):
  """Writes ``img`` as a PNG to ``out_png`` (local or gs://); returns its epath."""
  import cv2
  out = paths.resolve(out_png)
  ok, png = cv2.imencode(".png", img)
  if not ok:
    raise OSError(f"{what}: could not encode a PNG for {out}")
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_bytes(png.tobytes())
  return out


# -- points with error bars (sweeps) -----------------------------------------------------
_COLOURS = ((160, 70, 20), (30, 120, 230), (40, 160, 40), (40, 40, 200), (150, 60, 150),
            (20, 150, 170))   # BGR


def plot_points(series: Mapping[str, Sequence[tuple]], out_png: str | os.PathLike, *,
                title: str, x_label: str, size: tuple[int, int] = (720, 420)):
  """A PNG of ``{label: [(x, mean, std), ...]}``: each series' means joined by
  a line, ± std as error bars. The x values are categories, evenly spaced in
  sorted order (numbers by value), so 0, 1, 4, 16 read apart."""
  import cv2
  pts = [(x, m, sd) for v in series.values() for x, m, sd in v]
  if not pts:
    raise ValueError("plot_points: no points")
  if not all(math.isfinite(m) and math.isfinite(sd) for _, m, sd in pts):
    raise ValueError("plot_points: means and stds must be finite")
  numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x, _, _ in pts)
  xs = sorted({x for x, _, _ in pts}, key=(lambda x: x) if numeric else str)
  y0, y1 = min(m - sd for _, m, sd in pts), max(m + sd for _, m, sd in pts)
  pad = max(y1 - y0, 1e-3) * 0.1
  y0, y1 = y0 - pad, y1 + pad
  w, h = size
  left, right, top, bottom = 70, 20, max(36, 16 + 16 * len(series)), 48   # legend above
  img = np.full((h, w, 3), 255, np.uint8)
  step = (w - left - right) / (len(xs) + 1)
  px = lambda x: int(left + step * (xs.index(x) + 1))
  py = lambda y: int(top + (y1 - y) / (y1 - y0) * (h - top - bottom))
  _grid(img, [(py(y), f"{y:.3g}") for y in _nice_ticks(y0, y1) if y0 <= y <= y1],
        [(px(x), f"{x:g}" if numeric else str(x)) for x in xs], (left, right, top, bottom))
  for i, vals in enumerate(series.values()):
    colour = _COLOURS[i % len(_COLOURS)]
    vals = sorted(vals, key=lambda v: xs.index(v[0]))
    line = np.array([[px(x), py(m)] for x, m, _ in vals], np.int32)
    if len(line) > 1:
      cv2.polylines(img, [line], False, colour, 2, cv2.LINE_AA)
    for x, m, sd in vals:
      c = px(x) + 3 * i   # series side by side where they share an x
      cv2.line(img, (c, py(m - sd)), (c, py(m + sd)), colour, 1, cv2.LINE_AA)
      for y in (m - sd, m + sd):
        cv2.line(img, (c - 4, py(y)), (c + 4, py(y)), colour, 1, cv2.LINE_AA)
      cv2.circle(img, (c, py(m)), 4, colour, -1, cv2.LINE_AA)
  _legend(img, list(series), title, x_label, left, right)
  return _write_png(img, out_png, "plot_points")


def _legend(img, labels: list[str], title: str, x_label: str, left: int, right: int,
            y_label: str = "", top: int = 0) -> None:
  """Series labels in their colours (top right), the title, the axis labels."""
  import cv2
  h, w = img.shape[:2]
  font, black = cv2.FONT_HERSHEY_SIMPLEX, (0, 0, 0)
  for i, label in enumerate(labels):
    cv2.putText(img, label, (w - right - 8 * len(label), 18 + 16 * i), font, 0.45,
                _COLOURS[i % len(_COLOURS)], 1, cv2.LINE_AA)
  cv2.putText(img, title, (left, 24), font, 0.55, black, 1, cv2.LINE_AA)
  cv2.putText(img, x_label, (w // 2 - 4 * len(x_label), h - 10), font, 0.45, black, 1,
              cv2.LINE_AA)
  if y_label:
    cv2.putText(img, y_label, (4, top - 8), font, 0.4, black, 1, cv2.LINE_AA)


# -- a scatter of (x, y) points -----------------------------------------------------------
def plot_scatter(series: Mapping[str, Sequence[tuple]], out_png: str | os.PathLike, *,
                 title: str, x_label: str, y_label: str, size: tuple[int, int] = (720, 480)):
  """A PNG of ``{label: [(x, y), ...]}``, one colour per series, numeric axes."""
  import cv2
  pts = [(x, y) for v in series.values() for x, y in v]
  if not pts or not all(math.isfinite(x) and math.isfinite(y) for x, y in pts):
    raise ValueError("plot_scatter: needs finite points")
  lo = lambda vs: (min(vs) - max(max(vs) - min(vs), 1e-3) * 0.05)
  hi = lambda vs: (max(vs) + max(max(vs) - min(vs), 1e-3) * 0.05)
  x0, x1 = lo([x for x, _ in pts]), hi([x for x, _ in pts])
  y0, y1 = lo([y for _, y in pts]), hi([y for _, y in pts])
  w, h = size
  left, right, top, bottom = 70, 20, max(36, 16 + 16 * len(series)), 48   # legend above
  img = np.full((h, w, 3), 255, np.uint8)
  px = lambda x: int(left + (x - x0) / (x1 - x0) * (w - left - right))
  py = lambda y: int(top + (y1 - y) / (y1 - y0) * (h - top - bottom))
  _grid(img, [(py(y), f"{y:.3g}") for y in _nice_ticks(y0, y1) if y0 <= y <= y1],
        [(px(x), f"{x:.3g}") for x in _nice_ticks(x0, x1) if x0 <= x <= x1],
        (left, right, top, bottom))
  for i, vals in enumerate(series.values()):
    for x, y in vals:
      cv2.circle(img, (px(x), py(y)), 4, _COLOURS[i % len(_COLOURS)], -1, cv2.LINE_AA)
  _legend(img, list(series), title, x_label, left, right, y_label, top)
  return _write_png(img, out_png, "plot_scatter")
