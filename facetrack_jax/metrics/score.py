"""Scores caption predictions against FEC-Bench references.

    python -m facetrack_jax.metrics.score --pred P.json --ref R.json \\
        [--judge offline|openai] [--out DIR] [--videochatgpt] \\
        [--base-url URL] [--model NAME] [--api-key-env VAR] [--cache-dir DIR] [--concurrency N] \\
        [--allow-insecure-http]

Both files are FEC-Bench style JSON lists ``[{"id": ..., "caption": ...}, ...]``
(other keys ignored; ids compared as strings). Ids present on only one side
are reported -- printed and listed in the output -- and the intersection is
scored. Writes ``DIR/metrics.json`` (cider, rouge_l, autodq {precision,
recall, f1}, tem {...}, n, judge, missing ids), ``DIR/per_clip.jsonl``
(events and scores per clip), ``DIR/per_event.json`` and
``DIR/per_attribute.json`` (``breakdowns``: per event kind and per
appearance attribute, by the offline lexicon whatever the judge) and prints
a one-line table and the two breakdown tables. DIR defaults to the
prediction file's folder. Metric definitions: ``caption_metrics``
(CIDEr-D, ROUGE-L), ``event_metrics`` (AutoDQ, TEM), ``judge`` (judges).

``--judge openai`` asks an OpenAI-compatible endpoint (``judge_openai``: the
``--base-url`` / ``--model`` / ``--api-key-env`` / ``--cache-dir`` /
``--concurrency`` flags, else ``OPENAI_BASE_URL``, ``FACETRACK_JUDGE_MODEL``,
``OPENAI_API_KEY``, ``FACETRACK_JUDGE_CACHE``; a key goes over plain
``http://`` only to a loopback host unless ``--allow-insecure-http``); with ``--videochatgpt`` it
also grades the four VideoChatGPT scores (``videochatgpt``), written as
``videochatgpt: {correctness, detail, context, temporal}`` (0-5).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from collections.abc import Mapping

from facetrack_jax.metrics import caption_metrics, event_metrics
from facetrack_jax.metrics.breakdowns import breakdown_sections, write_breakdowns
from facetrack_jax.metrics.judge import Judge, get_judge


def load_captions(path: str | pathlib.Path) -> dict[str, str]:
  """FEC-Bench annotation / prediction file -> {id: caption}."""
  path = pathlib.Path(path)
  try:
    data = json.loads(path.read_text())
  except FileNotFoundError:
    raise FileNotFoundError(f"caption file {path} does not exist") from None
  except json.JSONDecodeError as e:
    raise ValueError(f"caption file {path} is not valid JSON: {e}") from None
  if not isinstance(data, list):
    raise ValueError(f"caption file {path}: expected a JSON list of {{'id', 'caption'}}, got {type(data).__name__}")
  out: dict[str, str] = {}
  for k, item in enumerate(data):
    if not isinstance(item, dict) or "id" not in item or "caption" not in item:
      raise ValueError(f"caption file {path}: entry {k} lacks 'id' or 'caption': {str(item)[:80]}")
    if not isinstance(item["caption"], str):
      raise ValueError(f"caption file {path}: entry {k} (id {item['id']!r}) has a non-string caption")
    key = str(item["id"])
    if key in out:
      raise ValueError(f"caption file {path}: id {key!r} occurs more than once")
    out[key] = item["caption"]
  return out


def score_captions(preds: Mapping[str, str], refs: Mapping[str, str], judge: Judge | str = "offline",
                   per_clip: bool = False, progress: bool = False, videochatgpt: bool = False) -> dict:
  """CIDEr, ROUGE-L, AutoDQ and TEM of ``preds`` against ``refs`` ({id: caption}).

  Scores the ids both have; the others are listed under ``missing_in_pred``
  (reference ids with no prediction) and ``missing_in_ref``. With
  ``per_clip`` the result also holds {id: events and scores}. With
  ``videochatgpt`` (needs a judge with ``videochatgpt_scores``, e.g.
  ``openai``) it also holds ``videochatgpt``: {criterion: mean 0-5}.
  """
  if isinstance(judge, str):
    judge = get_judge(judge)
  if videochatgpt and not hasattr(judge, "videochatgpt_scores"):
    raise ValueError(f"judge {judge.name!r} cannot give VideoChatGPT scores; use a language-model judge "
                     "(--judge openai)")
  preds = {str(k): v for k, v in preds.items()}
  refs = {str(k): v for k, v in refs.items()}
  common = sorted(set(preds) & set(refs))
  if not common:
    raise ValueError(f"predictions ({len(preds)} ids) and references ({len(refs)} ids) share no id")
  p = {i: preds[i] for i in common}
  r = {i: refs[i] for i in common}
  cider, cider_per = caption_metrics.cider(p, r)
  rouge, rouge_per = caption_metrics.rouge_l(p, r)
  events = event_metrics.event_scores(p, r, judge, progress=progress)
  out = {
      "n": len(common), "judge": judge.name,
      "cider": cider, "rouge_l": rouge, "autodq": events["autodq"], "tem": events["tem"],
      "missing_in_pred": sorted(set(refs) - set(preds)),
      "missing_in_ref": sorted(set(preds) - set(refs)),
  }
  vcg_per = {}
  if videochatgpt:
    from facetrack_jax.metrics import videochatgpt as vcg  # only the language-model path needs it
    vcg_per = dict(zip(common, judge.videochatgpt_scores([(p[i], r[i]) for i in common])))
    out["videochatgpt"] = vcg.mean_scores(list(vcg_per.values()))
  if per_clip:
    out["per_clip"] = {i: {"cider": cider_per[i], "rouge_l": rouge_per[i], **events["per_clip"][i],
                           **({"videochatgpt": vcg_per[i]} if vcg_per else {})} for i in common}
  return out


def format_table(m: Mapping) -> str:
  """One-line summary of :func:`score_captions`' result."""
  a, t = m["autodq"], m["tem"]
  return (f"n={m['n']} | CIDEr {m['cider']:.3f} | ROUGE-L {m['rouge_l']:.3f} | "
          f"AutoDQ {a['f1']:.3f} (P {a['precision']:.3f} R {a['recall']:.3f}) | "
          f"TEM {t['f1']:.3f} (P {t['precision']:.3f} R {t['recall']:.3f}) | "
          + ("VideoChatGPT " + " ".join(f"{k} {v:.2f}" for k, v in m["videochatgpt"].items()) + " | "
             if "videochatgpt" in m else "")
          + f"judge {m['judge']}")


def main(argv: list[str] | None = None) -> dict:
  parser = argparse.ArgumentParser(prog="python -m facetrack_jax.metrics.score", description=__doc__.split("\n")[0])
  parser.add_argument("--pred", required=True, help="predictions JSON [{id, caption}]")
  parser.add_argument("--ref", required=True, help="references JSON [{id, caption}] (FEC-Bench format)")
  parser.add_argument("--judge", default="offline", help="event judge: offline (default, no network) or openai")
  parser.add_argument("--out", default=None, help="output folder (default: the --pred file's folder)")
  parser.add_argument("--videochatgpt", action="store_true",
                      help="also the VideoChatGPT correctness/detail/context/temporal scores (language-model judge)")
  llm = parser.add_argument_group("language-model judge (--judge openai)")
  llm.add_argument("--base-url", help="chat-completions endpoint base (env OPENAI_BASE_URL)")
  llm.add_argument("--model", help="judge model name (env FACETRACK_JUDGE_MODEL)")
  llm.add_argument("--api-key-env", help="environment variable holding the API key (default OPENAI_API_KEY)")
  llm.add_argument("--cache-dir", help="judgement cache folder (env FACETRACK_JUDGE_CACHE)")
  llm.add_argument("--concurrency", type=int, help="requests in flight (default 8)")
  llm.add_argument("--allow-insecure-http", action="store_true", default=None,
                   help="send the API key over plain http:// to a non-loopback host (refused otherwise)")
  args = parser.parse_args(argv)
  judge_kwargs = {k: getattr(args, k) for k in ("base_url", "model", "api_key_env", "cache_dir", "concurrency",
                                               "allow_insecure_http")
                  if getattr(args, k) is not None}
  if judge_kwargs and args.judge == "offline":
    parser.error(f"--{next(iter(judge_kwargs)).replace('_', '-')} applies to a language-model judge "
                 "(--judge openai), not to the offline judge")
  if args.videochatgpt and args.judge == "offline":
    parser.error("--videochatgpt needs a language-model judge (--judge openai)")
  preds, refs = load_captions(args.pred), load_captions(args.ref)
  judge = get_judge(args.judge, **judge_kwargs)
  metrics = score_captions(preds, refs, judge, per_clip=True, progress=True, videochatgpt=args.videochatgpt)
  per_clip = metrics.pop("per_clip")
  for key, where in (("missing_in_pred", "have no prediction"), ("missing_in_ref", "are not in the references")):
    if metrics[key]:
      ids = metrics[key]
      print(f"WARNING: {len(ids)} ids {where} and are not scored: {ids[:20]}{' ...' if len(ids) > 20 else ''}",
            file=sys.stderr)
  out = pathlib.Path(args.out) if args.out else pathlib.Path(args.pred).resolve().parent
  out.mkdir(parents=True, exist_ok=True)
  (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
  with open(out / "per_clip.jsonl", "w") as f:
    for i, row in per_clip.items():
      f.write(json.dumps({"id": i, **row}) + "\n")
  by_kind = write_breakdowns(preds, refs, out)   # over the ids both have
  print(format_table(metrics))
  print(breakdown_sections(by_kind))
  print(f"wrote {out}/: metrics.json, per_clip.jsonl, " + ", ".join(f"per_{k}.json" for k in by_kind))
  return metrics


if __name__ == "__main__":
  main()
