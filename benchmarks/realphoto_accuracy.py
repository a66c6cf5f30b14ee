"""Face front end on edited clips cut from real photos (``data_prep/realphoto.py``):
main character, box IoU, shot cuts, two people in one track, seconds per clip.

  python -m benchmarks.realphoto_accuracy --num-clips 60 --seed 2 \
      [--real-footage] [--set detector=haar] [--set identity=appearance] \
      [--detector-arg upsample=1] [--width 640 --height 360 --frames 60] [--tag NAME]

Every clip is run through ``pipeline.process_video`` and scored with
``scoring.score_against_ground_truth``. Prints and writes
``benchmarks/results/realphoto_<tag>.json``. The photos come from packages
(``make photos``); without them this exits 2 naming what is missing.
Timings are wall-clock on a shared machine: compare settings measured in one
run, not across days.
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import tempfile
import time

import numpy as np


def _eye_tilts(res, embedder, m: float) -> list[float]:
  """|eye-line angle| (degrees) in each observed face crop of ``res`` (crop
  margin ``m``), from landmarks found again on the crop (meaningful for
  crops of >= ~96 px)."""
  from data_prep import crop
  s = res.faces.shape[1]
  inner = np.array([[s * m / (1 + 2 * m), s * m / (1 + 2 * m), s * (1 + m) / (1 + 2 * m),
                     s * (1 + m) / (1 + 2 * m)]])
  return [abs(crop.eye_angle(embedder.landmarks(res.faces[t], inner)[0]))
          for t in np.flatnonzero(res.face_mask & ~res.face_bridged)]


def run(num_clips: int, seed: int, overrides: dict, workdir: str, width: int = 640,
        height: int = 360, frames: int = 60, progress: bool = True,
        eye_tilt: bool = False) -> dict:
  import tqdm
  from data_prep import identity, pipeline, realphoto, scoring
  from data_prep.errors import ClipError
  made = pathlib.Path(workdir) / "annotations.json"
  anns = json.loads(made.read_text()) if made.is_file() else []
  if len(anns) != num_clips or not all(f"_s{seed}_" in a["id"] for a in anns):
    anns = realphoto.generate(workdir, num_clips, seed, num_frames=frames, width=width,
                              height=height, progress=progress)
  cfg = pipeline.PrepConfig(**overrides)
  scores, seconds, failed, stages, scenes, tilts = [], [], [], {}, {}, []
  embedder = identity.FaceEmbedder() if eye_tilt else None
  for ann in tqdm.tqdm(anns, desc=f"realphoto {cfg.detector}", disable=not progress):
    gt = json.loads((pathlib.Path(workdir) / "ground_truth" / f"{ann['id']}.json").read_text())
    t0 = time.perf_counter()
    try:
      res = pipeline.process_video(str(pathlib.Path(workdir) / ann["video"]), cfg)
    except ClipError as e:
      failed.append(str(e))
      s = {"main_correct": False, "mean_iou": 0.0, "tracks_mixed": 0,
           **scoring.cut_scores([], gt["cuts"])}
    else:
      s = scoring.score_against_ground_truth(res, gt)
      if embedder is not None:
        tilts += _eye_tilts(res, embedder, cfg.margin)
      for k, v in res.stats["seconds"].items():
        stages[k] = stages.get(k, 0.0) + v
    seconds.append(time.perf_counter() - t0)
    s["scene"] = gt["scene"]
    scores.append(s)
  true, hit = sum(s["cuts_true"] for s in scores), sum(s["cuts_hit"] for s in scores)
  found, false = sum(s["cuts_found"] for s in scores), sum(s["cuts_false"] for s in scores)
  for s in scores:
    scenes.setdefault(s["scene"], []).append(s["main_correct"])
  return {
      "date": datetime.datetime.now().isoformat(timespec="seconds"),
      "num_clips": num_clips, "seed": seed, "video": [width, height, frames],
      "prep_overrides": {k: v for k, v in overrides.items()},
      "main_correct_pct": 100.0 * float(np.mean([s["main_correct"] for s in scores])),
      "mean_iou": float(np.mean([s["mean_iou"] for s in scores])),
      "cut_recall": hit / true if true else 1.0,
      "false_cut_pct": 100.0 * false / found if found else 0.0,
      "tracks_mixed": int(sum(s["tracks_mixed"] for s in scores)),
      "clips_failed": len(failed), "failures": failed[:5],
      "seconds_per_clip": float(np.mean(seconds)),
      "stage_seconds_per_clip": {k: v / max(1, len(scores) - len(failed))
                                 for k, v in stages.items()},
      "main_correct_by_scene": {k: float(np.mean(v)) for k, v in sorted(scenes.items())},
      "wrong_clips": [i for i, s in enumerate(scores) if not s["main_correct"]],
      "eye_tilt_deg": ({"mean": float(np.mean(tilts)), "over_5_pct": 100.0 * float(
          np.mean(np.asarray(tilts) > 5)), "crops": len(tilts)} if tilts else None),
  }


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--num-clips", type=int, default=60)
  p.add_argument("--seed", type=int, default=2)
  p.add_argument("--width", type=int, default=640)
  p.add_argument("--height", type=int, default=360)
  p.add_argument("--frames", type=int, default=60)
  p.add_argument("--real-footage", action="store_true",
                 help="start from pipeline.REAL_FOOTAGE (what --annotations builds use)")
  p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                 help="PrepConfig field, e.g. --set detector=dlib_hog")
  p.add_argument("--detector-arg", action="append", default=[], metavar="KEY=VALUE")
  p.add_argument("--eye-tilt", action="store_true",
                 help="also measure the eye line's tilt in the face crops (landmarks found "
                      "again on each crop; use with --set face_size=128)")
  p.add_argument("--tag", help="result file name: realphoto_<tag>.json")
  p.add_argument("--workdir", help="keep the clips here, and reuse them when they are the same "
                 "count and seed (default: a temporary folder)")
  args = p.parse_args(argv)
  from data_prep import detect, pipeline, realphoto_sources
  reason = realphoto_sources.missing_reason()
  if reason:
    p.exit(2, f"{reason}\n")
  try:
    overrides = detect.prep_overrides(args.set, args.detector_arg,
                                      pipeline.REAL_FOOTAGE if args.real_footage else None)
  except ValueError as e:
    p.error(str(e))
  if args.workdir:
    res = run(args.num_clips, args.seed, overrides, args.workdir, args.width, args.height,
              args.frames, eye_tilt=args.eye_tilt)
  else:
    with tempfile.TemporaryDirectory() as tmp:
      res = run(args.num_clips, args.seed, overrides, tmp, args.width, args.height, args.frames,
                eye_tilt=args.eye_tilt)
  tag = args.tag or "_".join(f"{k}-{v}" for k, v in sorted(overrides.items())) or "default"
  out = pathlib.Path(__file__).parent / "results" / f"realphoto_{tag}.json"
  out.write_text(json.dumps(res, indent=1, default=str) + "\n")
  print(f"{res['num_clips']} clips (seed {res['seed']}, {args.width}x{args.height}, "
        f"{args.frames} frames), {overrides or 'defaults'}: main character "
        f"{res['main_correct_pct']:.1f}%, mean IoU {res['mean_iou']:.3f}, cut recall "
        f"{res['cut_recall']:.3f}, false cuts {res['false_cut_pct']:.1f}%, tracks with two "
        f"people {res['tracks_mixed']}, {res['seconds_per_clip']:.2f} s per clip, "
        f"{res['clips_failed']} failed"
        + (f", eye tilt in the crops {res['eye_tilt_deg']}" if res["eye_tilt_deg"] else ""))
  print(f"wrote {out}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
