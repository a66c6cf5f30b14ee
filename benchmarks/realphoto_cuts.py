"""Shot-cut detectors on the real-photo edited clips: the pipeline's own
(``track.scene_cuts``) against PySceneDetect's (``data_prep/shots.py``),
each at a few thresholds, on the small frames the pipeline decodes.

  python -m benchmarks.realphoto_cuts --num-clips 60 --seed 2 [--workdir DIR]

A found cut within 1 frame of a true one is a hit. Prints recall, false cuts
(share of the found ones) and ms per clip; writes
``benchmarks/results/realphoto_cuts.json``. Thresholds were first tried on
seed 1; seed 2 is the held-out measurement.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import tempfile
import time

CANDIDATES = [("frames", None), ("frames", (0.2, 0.05)),
              ("scenedetect_content", None), ("scenedetect_content", 45.0),
              ("scenedetect_adaptive", None), ("scenedetect_adaptive", 2.5),
              ("scenedetect_hash", None), ("scenedetect_hash", 0.35),
              ("scenedetect_histogram", None), ("scenedetect_histogram", 0.08)]


def run(num_clips: int, seed: int, workdir: str) -> list[dict]:
  from data_prep import pipeline, realphoto, scoring
  root = pathlib.Path(workdir)
  made = root / "annotations.json"
  anns = json.loads(made.read_text()) if made.is_file() else []
  if len(anns) != num_clips or not all(f"_s{seed}_" in a["id"] for a in anns):
    anns = realphoto.generate(root, num_clips, seed, progress=False)
  cfg = pipeline.PrepConfig(**pipeline.REAL_FOOTAGE)
  clips = [(pipeline.decode(str(root / a["video"]), cfg),
            json.loads((root / "ground_truth" / f"{a['id']}.json").read_text())["cuts"])
           for a in anns]
  rows = []
  for name, threshold in CANDIDATES:
    if name == "frames":
      c = pipeline.PrepConfig(cut_detector="frames", **(
          {} if threshold is None else dict(cut_hist_threshold=threshold[0],
                                            cut_pixel_threshold=threshold[1])))
    else:
      c = pipeline.PrepConfig(cut_detector=name, cut_threshold=threshold)
    t0, tot = time.perf_counter(), {"cuts_true": 0, "cuts_hit": 0, "cuts_found": 0,
                                    "cuts_false": 0}
    for vid, true in clips:
      for k, v in scoring.cut_scores(pipeline.scene_cuts(vid, c), true).items():
        tot[k] += v
    rows.append({"detector": name, "threshold": threshold, **tot,
                 "recall": tot["cuts_hit"] / tot["cuts_true"],
                 "false_pct": 100.0 * tot["cuts_false"] / max(1, tot["cuts_found"]),
                 "ms_per_clip": 1e3 * (time.perf_counter() - t0) / len(clips)})
  return rows


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--num-clips", type=int, default=60)
  p.add_argument("--seed", type=int, default=2)
  p.add_argument("--workdir", help="keep (and reuse) the clips here")
  args = p.parse_args(argv)
  from data_prep import realphoto_sources
  if (reason := realphoto_sources.missing_reason()):
    p.exit(2, f"{reason}\n")
  if args.workdir:
    rows = run(args.num_clips, args.seed, args.workdir)
  else:
    with tempfile.TemporaryDirectory() as tmp:
      rows = run(args.num_clips, args.seed, tmp)
  for r in rows:
    print(f"{r['detector']:22s} {str(r['threshold']):12s} recall {r['recall']:.3f} "
          f"({r['cuts_hit']}/{r['cuts_true']}), false {r['false_pct']:4.1f}% "
          f"({r['cuts_false']}/{r['cuts_found']}), {r['ms_per_clip']:.1f} ms/clip")
  out = pathlib.Path(__file__).parent / "results" / "realphoto_cuts.json"
  out.write_text(json.dumps({"num_clips": args.num_clips, "seed": args.seed, "rows": rows},
                            indent=1) + "\n")
  print(f"wrote {out}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
