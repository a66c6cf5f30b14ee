"""A sweep's results in one table, a plot and TensorBoard HParams.

:func:`write_all` reads every run's workdir (``facetrack_jax.sweep``; the
demo's outputs: ``eval/<num_steps>/{metrics,per_event}.json``,
``metrics.jsonl``, ``stages.json``, and the sweep's ``sweep_error.json``) and
writes, in the sweep's folder:

* ``sweep.json``: every run (overrides, swept values, status, final metrics,
  per-event lifts, error) and every point (the runs that differ only by seed,
  :data:`facetrack_jax.sweep.SEED_KEYS`) with mean ± std over its finished
  runs (sample std, 0 for one run, shown as the value alone);
* ``sweep.md``: the same as tables, plus each point's per-event lift;
* ``sweep.png``: the main metric (mean ± std) against the first swept key,
  one line per value of the other swept keys;
* ``hparams/``: TensorBoard HParams summaries (``tensorboard --logdir W``).
"""

from __future__ import annotations

import json
import math
import pathlib
import shutil
import statistics

METRICS = {"tem": "TEM", "autodq": "AutoDQ", "cider": "CIDEr", "rouge_l": "ROUGE-L",
           "loss": "final train loss"}
HPARAMS_TAGS = {m: "train/final_loss" if m == "loss" else f"eval/{m}" for m in METRICS}


def _get(config, dotted: str):
  node = config
  for part in dotted.split("."):
    node = node[part]
  return node


def read_run(run) -> dict:
  """One run's record: status ``done`` / ``failed`` / ``pending`` (not
  started, or stopped before its final evaluation) and what it produced."""
  from facetrack_jax.logging_utils import read_metrics
  from facetrack_jax.models.facetrack import num_visual_tokens
  steps = run.config.train.num_steps
  rec = {"name": run.name, "workdir": str(run.workdir), "overrides": run.overrides,
         "status": "pending", "num_steps": steps,
         "visual_tokens": num_visual_tokens(run.config.model)}
  eval_dir = run.workdir / "eval" / str(steps)
  err = run.workdir / "sweep_error.json"
  if (eval_dir / "metrics.json").exists():
    m = json.loads((eval_dir / "metrics.json").read_text())
    losses = [r["loss"] for r in read_metrics(run.workdir / "metrics.jsonl")
              if r.get("step") == steps]
    rec.update(status="done", n_clips=m["n"], metrics={
        "tem": m["tem"]["f1"], "autodq": m["autodq"]["f1"], "cider": m["cider"],
        "rouge_l": m["rouge_l"], "loss": losses[-1] if losses else None})
    if (eval_dir / "per_event.json").exists():
      rec["lift"] = {k: v["lift"] for k, v in
                     json.loads((eval_dir / "per_event.json").read_text()).items()}
    stages = run.workdir / "stages.json"
    if stages.exists():
      rec["train_seconds_last_invocation"] = json.loads(stages.read_text()).get("train")
  elif err.exists():
    e = json.loads(err.read_text())
    rec.update(status="failed", error=e["error"], log=e.get("log"))
  return rec


def _mean_std(xs: list[float]) -> list[float]:
  return [statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0]


def summarize(records: list[dict], swept: dict[str, list]) -> list[dict]:
  """Points (records that differ only in a seed key), in first-run order:
  ``{"label", "overrides", "values", "runs", "done", "failed", metric: [mean,
  std] | None, "lift": {event: [mean, std]}}``. ``swept``: each swept key's
  value per record (resolved from the run's config, in record order)."""
  from facetrack_jax.sweep import SEED_KEYS, run_names
  groups: dict[str, list[int]] = {}
  for i, r in enumerate(records):
    key = json.dumps({k: v for k, v in r["overrides"].items() if k not in SEED_KEYS},
                     sort_keys=True)
    groups.setdefault(key, []).append(i)
  point_keys = [k for k in swept if k not in SEED_KEYS]
  labels = run_names([json.loads(k) for k in groups])
  points = []
  for label, (key, idx) in zip(labels, groups.items()):
    done = [records[i] for i in idx if records[i]["status"] == "done"]
    p = {"label": label, "overrides": json.loads(key),
         "values": {k: swept[k][idx[0]] for k in point_keys}, "runs": [records[i]["name"]
                                                                       for i in idx],
         "done": len(done), "failed": sum(records[i]["status"] == "failed" for i in idx),
         "visual_tokens": records[idx[0]]["visual_tokens"]}
    for m in METRICS:
      xs = [r["metrics"][m] for r in done if r["metrics"][m] is not None]
      p[m] = _mean_std(xs) if xs else None
    events = list(dict.fromkeys(e for r in done for e in r.get("lift", {})))
    p["lift"] = {e: _mean_std([r["lift"][e] for r in done if e in r.get("lift", {})])
                 for e in events}
    points.append(p)
  return points


def _ms(x, n: int) -> str:
  """mean ± std over ``n`` runs; one run has no spread to show."""
  if x is None:
    return "–"
  return f"{x[0]:.3f}" if n == 1 else f"{x[0]:.3f} ± {x[1]:.3f}"


def render(points: list[dict], records: list[dict], settings: dict, metric: str,
           png: str | None = None) -> str:
  """``sweep.md`` (``png``: the plot's file name, shown under the table)."""
  lines = [f"# Sweep `{pathlib.Path(settings['sweep']).name}`\n",
           f"Mean ± std over the finished runs of each point (seeds; a point with one run shows its value); metrics as fractions on "
           f"the held-out clips, greedy decoding, offline judge (TEM: our reconstruction). "
           f"Main metric: {METRICS[metric]}.\n",
           "| point | runs done | visual tokens / clip | " + " | ".join(METRICS.values())
           + " |", "|---|---:|---:|" + "---:|" * len(METRICS)]
  for p in points:
    runs = f"{p['done']}/{len(p['runs'])}" + (f" ({p['failed']} failed)" if p["failed"] else "")
    lines.append(f"| {p['label']} | {runs} | {p['visual_tokens']} | "
                 + " | ".join(_ms(p[m], p["done"]) for m in METRICS) + " |")
  if png:
    lines += ["", f"![{METRICS[metric]} against the swept value]({png})"]
  events = list(dict.fromkeys(e for p in points for e in p["lift"]))
  if events:
    lines += ["", "## Per-event lift (recall − predicted rate; 0 = chance), mean ± std", "",
              "| event | " + " | ".join(p["label"] for p in points) + " |",
              "|---|" + "---:|" * len(points)]
    for e in events:
      lines.append(f"| {e} | " + " | ".join(_ms(p["lift"].get(e), p["done"]) for p in points) + " |")
  lines += ["", "## Runs", "", "| run | status | " + " | ".join(METRICS.values())
            + " | train s (last invocation) |", "|---|---|" + "---:|" * (len(METRICS) + 1)]
  for r in records:
    cells = [("–" if r.get("metrics", {}).get(m) is None else f"{r['metrics'][m]:.3f}")
             for m in METRICS]
    secs = r.get("train_seconds_last_invocation")
    cells.append("–" if secs is None else f"{secs:.0f}")
    status = r["status"] + (f": {r['error']}" if r["status"] == "failed" else "") + (
        f" (from {r['merged_from']})" if "merged_from" in r else "")
    lines.append(f"| {r['name']} | {status.replace('|', '/')} | " + " | ".join(cells) + " |")
  lines += ["", "## Settings", ""] + [f"- {k}: `{v}`" for k, v in settings.items()]
  return "\n".join(lines) + "\n"


def plot(points: list[dict], out_png: pathlib.Path, metric: str) -> pathlib.Path | None:
  """``sweep.png``: ``metric`` against the first swept key (None: nothing done)."""
  from facetrack_jax import report
  pts = [p for p in points if p[metric] is not None]
  if not pts:
    return None
  keys = list(pts[0]["values"])
  x_key, rest = (keys[0], keys[1:]) if keys else (None, [])
  series: dict[str, list] = {}
  for p in pts:
    label = ", ".join(f"{k.rsplit('.', 1)[-1]}={p['values'][k]}" for k in rest) or METRICS[metric]
    x = p["values"][x_key] if x_key else "base"
    series.setdefault(label, []).append((x, *p[metric]))
  x_name = x_key.rsplit(".", 1)[-1] if x_key else "run"
  return report.plot_points(series, out_png, title=f"{METRICS[metric]}, mean +/- std over seeds",
                            x_label=x_name)


def merge_records(records: list[dict], merge_files) -> list[dict]:
  """``records`` where each run not finished here takes its finished record
  from the first of ``merge_files`` (earlier ``sweep.json`` files of the same
  sweep: another machine's, another session's) that has one, with
  ``"merged_from"`` naming the file."""
  found: dict[str, dict] = {}
  for f in merge_files:
    data = json.loads(pathlib.Path(f).read_text())
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
      raise ValueError(f"--merge {f}: not a sweep.json (no 'runs' list)")
    for r in data["runs"]:
      if r.get("status") == "done":
        found.setdefault(r["name"], dict(r, merged_from=str(f)))
  return [found.get(rec["name"], rec) if rec["status"] != "done" else rec for rec in records]


def write_all(workdir: pathlib.Path, runs: list, *, sweep_file: pathlib.Path, metric: str,
              command: str, merge_files=()) -> dict:
  """Writes sweep.json, sweep.md, sweep.png and hparams/; returns the json.
  ``merge_files``: earlier sweep.json files whose finished runs stand in for
  runs not finished here (:func:`merge_records`)."""
  from facetrack_jax import logging_utils
  if metric not in METRICS:
    raise ValueError(f"{sweep_file}: METRIC must be one of {sorted(METRICS)}, got {metric!r}")
  records = merge_records([read_run(r) for r in runs], merge_files)
  keys = list(dict.fromkeys(k for r in runs for k in r.overrides))
  swept = {k: [_get(r.config, k) for r in runs] for k in keys}
  for i, rec in enumerate(records):
    rec["values"] = {k: swept[k][i] for k in keys}
  points = summarize(records, swept)
  settings = {"sweep": str(sweep_file), "workdir": str(workdir), "command": command,
              "runs": f"{sum(r['status'] == 'done' for r in records)} done, "
                      f"{sum(r['status'] == 'failed' for r in records)} failed, "
                      f"{sum(r['status'] == 'pending' for r in records)} pending"}
  merged = sorted({r["merged_from"] for r in records if "merged_from" in r})
  if merged:
    settings["merged_from"] = {f: [r["name"] for r in records if r.get("merged_from") == f]
                               for f in merged}
  if runs:
    c = runs[0].config
    settings.update(dataset=c.data.name, steps=c.train.num_steps, batch=c.data.batch_size)
  workdir.mkdir(parents=True, exist_ok=True)
  out = {"metric": metric, "points": points, "runs": records, "settings": settings}
  (workdir / "sweep.json").write_text(json.dumps(out, indent=1, default=str) + "\n")
  png = plot(points, workdir / "sweep.png", metric)
  md = render(points, records, settings, metric, png.name if png else None)
  (workdir / "sweep.md").write_text(md)
  hp = workdir / "hparams"
  shutil.rmtree(hp, ignore_errors=True)   # rewritten whole: one session per run
  sessions = [{"name": r["name"], "hparams": r["values"], "step": r["num_steps"],
               "failed": r["status"] == "failed",
               "metrics": {HPARAMS_TAGS[m]: v for m, v in r.get("metrics", {}).items()
                           if v is not None and math.isfinite(v)}}
              for r in records if r["status"] != "pending"]
  if sessions:
    logging_utils.write_hparams(hp, sessions, list(HPARAMS_TAGS.values()))
  print(md)
  print(f"wrote {workdir / 'sweep.md'}, sweep.json" + (", sweep.png" if png else "")
        + (", hparams/" if sessions else ""))
  return out
