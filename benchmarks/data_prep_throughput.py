"""data_prep throughput: decode-only vs the full ``process_video``.

On the same N synthetic clips (made by ``data_prep.synthetic.generate``)
measures clips/s of (a) the pipeline's decode step (``pipeline.decode``:
every frame decoded, the detection frames converted to RGB, every frame
shrunk for the scene cuts), (b) the whole ``process_video`` (decode +
detect + track + choose + crop) and, for reference, (c) converting every
frame to RGB (``video.decode_video``, what the pipeline did before it kept
only the frames it uses). The passes take turns and each is timed as its
best of ``--repeats`` (so all see the same machine: on a shared VM the speed
drifts by ~10% between minutes). Prints ``ratio = full / decode`` = (b) /
(a) (target >= 0.5: face tracking at most doubles the cost of reading the
videos) and writes it to
``benchmarks/results/data_prep_<host>[_<W>x<H>][_<F>f].json``.

  python -m benchmarks.data_prep_throughput --num-clips 16 [--repeats 2] \
      [--width 1280 --height 720] [--clip-frames 96 --fps 30] \
      [--workers 2] [--set keyframe_every=8] [--detector-arg min_size=30]
  # the real-footage front end on clips cut from real photos (make photos)
  python -m benchmarks.data_prep_throughput --source realphoto --real-footage \
      --width 1280 --height 720

``--workers W`` also times (a) and (b) as the build runs them with
``--workers W``: W spawned processes sharing the cores
(``clip_job.init_worker``), so the ratio is one of CPU time. The single
process passes and the workers also record their CPU time
(``cpu_ratio_full_over_decode``: ``time.process_time``, the decoder's
threads included), which a machine busy with other work disturbs less than
the wall-clock ratio.

The ratio depends on the video's resolution: decoding grows with the pixel
count, detection does not (the detector shrinks every frame to
``max_side`` = 240 px first, ``data_prep/detect.py``). The synthetic set is
320x240; real FEC-Bench sources are mostly 720p or larger (RAVDESS 1280x720),
so measure both. The synthetic clips are 16 frames (2 s at 8 fps); real
ones are longer (3-5 s at 25-30 fps): ``--clip-frames`` / ``--fps``.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import multiprocessing
import os
import pathlib
import platform
import socket
import tempfile
import time

TARGET_RATIO = 0.5


def _clips_per_s(fns, paths, repeats: int, cpu: list | None = None) -> list[float]:
  """Clips/s of each of ``fns`` over ``paths``: the best of ``repeats`` passes,
  the passes of the functions interleaved so that each sees the same load.
  ``cpu``: filled with each function's CPU seconds per clip (this process,
  all its threads: ``time.process_time``), also the best pass."""
  best, best_cpu = [float("inf")] * len(fns), [float("inf")] * len(fns)
  for _ in range(repeats):
    for i, fn in enumerate(fns):
      t0, c0 = time.perf_counter(), time.process_time()
      for p in paths:
        fn(p)
      best[i] = min(best[i], time.perf_counter() - t0)
      best_cpu[i] = min(best_cpu[i], (time.process_time() - c0) / len(paths))
  if cpu is not None:
    cpu[:] = best_cpu
  return [len(paths) / b for b in best]


def _decode_one(path: str, cfg) -> float:
  """The worker's CPU seconds for decoding ``path``."""
  from data_prep import pipeline
  c0 = time.process_time()
  pipeline.decode(path, cfg)
  return time.process_time() - c0


def _full_one(path: str, cfg) -> float:
  """The worker's CPU seconds for ``process_video`` on ``path``."""
  from data_prep import pipeline
  from data_prep.errors import ClipError
  c0 = time.process_time()
  try:
    pipeline.process_video(path, cfg)
  except ClipError:
    pass
  return time.process_time() - c0


def _pool_clips_per_s(workers: int, cfg, paths, repeats: int, cpu: list | None = None
                      ) -> list[float]:
  """As ``_clips_per_s`` for (decode, full), each pass a ``Pool.map`` over
  ``workers`` processes set up as the build's (``clip_job.init_worker``);
  ``cpu``: filled with the workers' CPU seconds per clip of each (best pass)."""
  from data_prep import clip_job
  fns = [functools.partial(_decode_one, cfg=cfg), functools.partial(_full_one, cfg=cfg)]
  best, best_cpu = [float("inf")] * len(fns), [float("inf")] * len(fns)
  with multiprocessing.get_context("spawn").Pool(
      workers, initializer=clip_job.init_worker,
      initargs=(clip_job.worker_threads(workers),)) as pool:
    pool.map(fns[1], paths[:workers], chunksize=1)   # warm-up: imports, detector load
    for _ in range(repeats):
      for i, fn in enumerate(fns):
        t0 = time.perf_counter()
        seconds = pool.map(fn, paths, chunksize=1)
        best[i] = min(best[i], time.perf_counter() - t0)
        best_cpu[i] = min(best_cpu[i], sum(seconds) / len(paths))
  if cpu is not None:
    cpu[:] = best_cpu
  return [len(paths) / b for b in best]


def run(num_clips: int, seed: int, repeats: int, workdir: str,
        overrides: dict | None = None, width: int = 320, height: int = 240,
        clip_frames: int = 16, fps: float = 8.0, workers: int = 0,
        source: str = "synthetic") -> dict:
  from data_prep import detect, pipeline, realphoto, synthetic, video
  from data_prep.errors import ClipError

  if source == "realphoto":
    realphoto.generate(workdir, num_clips, seed, num_frames=clip_frames, width=width,
                       height=height, fps=fps, progress=False)
  else:
    synthetic.generate(workdir, num_clips=num_clips, seed=seed, width=width, height=height,
                       num_frames=clip_frames, fps=fps)
  records = json.loads((pathlib.Path(workdir) / "annotations.json").read_text())
  paths = [str(pathlib.Path(workdir) / r["video"]) for r in records]
  cfg = pipeline.PrepConfig(**(overrides or {}))
  failures = []

  def full(p):
    try:
      return pipeline.process_video(p, cfg)
    except ClipError as e:  # still paid for; counted
      failures.append(str(e))

  full(paths[0])  # warm-up: detector load, codec init
  video.decode_video(paths[0], cfg.decode_max_side)
  failures.clear()
  cpu: list = []
  decode_cps, full_cps, all_rgb_cps = _clips_per_s(
      [lambda p: pipeline.decode(p, cfg), full,
       lambda p: video.decode_video(p, cfg.decode_max_side)], paths, repeats, cpu)
  pool = None
  if workers > 1:
    pool_cpu: list = []
    pool_decode, pool_full = _pool_clips_per_s(workers, cfg, paths, repeats, pool_cpu)
    pool = {"workers": workers, "decode_clips_per_s": pool_decode,
            "full_clips_per_s": pool_full, "ratio_full_over_decode": pool_full / pool_decode,
            "cpu_s_per_clip": {"decode": pool_cpu[0], "full": pool_cpu[1]},
            "cpu_ratio_full_over_decode": pool_cpu[0] / pool_cpu[1]}
  stages: dict[str, float] = {}
  frames, ok = 0, 0
  failures.clear()
  for p in paths:  # one more pass for the per-stage split
    r = full(p)
    if r is not None:
      frames, ok = frames + r.stats["frames_decoded"], ok + 1
      for k, v in r.stats["seconds"].items():
        stages[k] = stages.get(k, 0.0) + v
  total = sum(stages.values()) or 1.0
  return {
      "host": socket.gethostname(), "machine": platform.machine(),
      "processor": platform.processor(), "cpu_count": os.cpu_count(),
      "date": datetime.datetime.now().isoformat(timespec="seconds"),
      "num_clips": num_clips, "seed": seed, "repeats": repeats, "source": source,
      "video_size": [width, height], "clip_frames": clip_frames, "fps": fps,
      "frames_per_clip": frames / max(1, ok),
      "prep_config": {k: getattr(cfg, k) for k in
                      ("num_frames", "frame_size", "face_size", "detector",
                       "decode_max_side", "max_detect_frames", "detect_stride",
                       "cut_detector", "cut_threshold", "identity", "align_crops")},
      "prep_overrides": overrides or {},
      "detector_repr": repr(detect.get_detector(cfg.detector, **dict(cfg.detector_kwargs))),
      "decode_clips_per_s": decode_cps, "full_clips_per_s": full_cps,
      "decode_every_frame_rgb_clips_per_s": all_rgb_cps,
      "ratio_full_over_decode": full_cps / decode_cps, "target_ratio": TARGET_RATIO,
      "cpu_s_per_clip": {"decode": cpu[0], "full": cpu[1]},
      "cpu_ratio_full_over_decode": cpu[0] / cpu[1],
      "meets_target": full_cps / decode_cps >= TARGET_RATIO,
      "stage_share": {k: v / total for k, v in stages.items()},
      "worker_pool": pool,
      "clip_errors": failures[:5], "clips_failed": len(failures),
      "note": "single process unless worker_pool; wall-clock timings inflated by whatever "
              "else runs on the host",
  }


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--num-clips", type=int, default=16)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--repeats", type=int, default=1, help="best of this many passes")
  p.add_argument("--width", type=int, default=320, help="synthetic video width")
  p.add_argument("--height", type=int, default=240, help="synthetic video height")
  p.add_argument("--source", choices=("synthetic", "realphoto"), default="synthetic",
                 help="synthetic drawn faces, or edited clips cut from real photos "
                      "(data_prep/realphoto.py; `make photos` first)")
  p.add_argument("--real-footage", action="store_true",
                 help="the real-footage front end (pipeline.REAL_FOOTAGE: what "
                      "--annotations builds use) instead of the synthetic default")
  p.add_argument("--clip-frames", type=int, help="frames per clip (default 16 synthetic, "
                 "60 realphoto)")
  p.add_argument("--fps", type=float, help="frame rate (default 8 synthetic, 24 realphoto)")
  p.add_argument("--workers", type=int, default=0,
                 help="also measure both with this many worker processes, as the build runs them")
  p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                 help="PrepConfig override, e.g. --set max_detect_frames=8 (int/float/str)")
  p.add_argument("--detector-arg", action="append", default=[], metavar="KEY=VALUE",
                 help="detector argument, e.g. --detector-arg min_size=30 (int/float/str)")
  p.add_argument("--out", help="result JSON (default benchmarks/results/data_prep_<host>.json)")
  args = p.parse_args(argv)
  from data_prep import detect, pipeline
  real = args.source == "realphoto"
  args.clip_frames = args.clip_frames or (60 if real else 16)
  args.fps = args.fps or (24.0 if real else 8.0)
  try:
    overrides = detect.prep_overrides(args.set, args.detector_arg,
                                      pipeline.REAL_FOOTAGE if args.real_footage else None)
  except ValueError as e:
    p.error(str(e))
  with tempfile.TemporaryDirectory() as tmp:
    res = run(args.num_clips, args.seed, args.repeats, tmp, overrides, args.width, args.height,
              args.clip_frames, args.fps, args.workers, args.source)
  name = (res["host"] or res["machine"]).replace(os.sep, "_")
  if real:
    name += "_realphoto"
  if args.real_footage:
    name += "_realdefault"
  if (args.width, args.height) != (320, 240):
    name += f"_{args.width}x{args.height}"
  if args.clip_frames != (60 if real else 16):
    name += f"_{args.clip_frames}f"
  out = pathlib.Path(args.out or pathlib.Path(__file__).parent / "results"
                     / f"data_prep_{name}.json")
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(res, indent=1) + "\n")
  print(f"{args.num_clips} clips of {args.clip_frames} frames, {args.width}x{args.height}: "
        f"decode {res['decode_clips_per_s']:.2f} clips/s (every frame to RGB: "
        f"{res['decode_every_frame_rgb_clips_per_s']:.2f}), "
        f"full process_video {res['full_clips_per_s']:.2f} clips/s, ratio "
        f"{res['ratio_full_over_decode']:.2f} (target >= {TARGET_RATIO}: "
        f"{'met' if res['meets_target'] else 'NOT met'})")
  print(f"CPU time (this process, all threads): decode {res['cpu_s_per_clip']['decode']:.3f} "
        f"s/clip, full {res['cpu_s_per_clip']['full']:.3f} s/clip, ratio "
        f"{res['cpu_ratio_full_over_decode']:.2f}")
  if res["worker_pool"]:
    wp = res["worker_pool"]
    print(f"{wp['workers']} worker processes: decode {wp['decode_clips_per_s']:.2f} clips/s, full "
          f"{wp['full_clips_per_s']:.2f} clips/s, ratio {wp['ratio_full_over_decode']:.2f}; "
          f"their CPU time: decode {wp['cpu_s_per_clip']['decode']:.3f} s/clip, full "
          f"{wp['cpu_s_per_clip']['full']:.3f} s/clip, ratio "
          f"{wp['cpu_ratio_full_over_decode']:.2f}")
  print("share of process_video time: " + ", ".join(
      f"{k} {v:.0%}" for k, v in res["stage_share"].items()))
  print(f"wrote {out}")
  return 0


if __name__ == "__main__":
  from facetrack_jax import host_memory
  host_memory.retain_freed_memory(jax_on_cpu_only=False)   # as python -m data_prep.build
  raise SystemExit(main())
