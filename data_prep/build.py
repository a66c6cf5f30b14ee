"""Build the ``facetrack`` TFDS dataset (ArrayRecord) from videos.

  # your FEC-Bench videos (annotation files per split, SPLIT= optional)
  python -m data_prep.build --annotations test=test.json --video-root VIDEOS \\
      --data-dir D [--detector dlib_hog] [--detector-arg upsample=1] \\
      [--workers 8] [--contact-sheets SHEETS]
  # the synthetic set (generated, then processed the same way)
  python -m data_prep.build --synthetic --num-train 2000 --num-test 200 --data-dir D

Bad clips are skipped and recorded in ``<D>/facetrack/<config>/1.0.0/errors.jsonl``
(among them video paths or ids that leave the video root, videos longer than
``--max-video-frames``, and clips whose worker process died);
the build summary is printed and written to ``build_summary.json`` beside it.
Exit status: 0 when at least one clip was built, 1 when none could be (or
no worker process could start), 2 for bad arguments or an unreadable
annotation file. Read the result with
``tfds.data_source("facetrack/<config>", data_dir=D, split=..., download=False)``.
"""

from __future__ import annotations

import argparse
import re
import sys

import tensorflow_datasets as tfds

from data_prep import build_summary, builder as builder_lib, clip_pool
from data_prep.annotations import AnnotationFileError

_CLI = "python -m data_prep.build"


def parse_args(argv=None) -> argparse.Namespace:
  from data_prep import detect  # pylint: disable=g-import-not-at-top
  p = argparse.ArgumentParser(
      prog=_CLI, description=__doc__,
      epilog="Splits: give --annotations once per split as SPLIT=FILE "
             "(e.g. --annotations train=a.json --annotations test=b.json); a "
             "FILE without SPLIT= goes to --split (default 'train'). An id used "
             "in two splits is an error for the second one.",
      formatter_class=argparse.RawDescriptionHelpFormatter)
  src = p.add_argument_group("input (one of)")
  src.add_argument("--annotations", action="append", default=[], metavar="[SPLIT=]FILE",
                   help="FEC-Bench-format JSON [{id, video, caption}] (repeatable)")
  src.add_argument("--video-root", help="directory the annotations' video paths are "
                   "relative to; <video-root>/ground_truth/<id>.json, if present, "
                   "scores track selection")
  src.add_argument("--synthetic", action="store_true",
                   help="build facetrack/synthetic: generate clips, then process them")
  p.add_argument("--data-dir", required=True, help="TFDS data_dir to write to")
  p.add_argument("--split", default="train", help="split for FILEs given without SPLIT=")
  p.add_argument("--num-train", type=int, default=2000, help="synthetic: train clips")
  p.add_argument("--num-test", type=int, default=200, help="synthetic: test clips")
  p.add_argument("--seed", type=int, default=0, help="synthetic: generator seed")
  p.add_argument("--takes", type=int, default=1,
                 help="synthetic: clips per cast (same people and set, other events)")
  p.add_argument("--num-frames", type=int, default=8, help="T, frames per clip")
  p.add_argument("--frame-size", type=int, default=64, help="H = W of the global frames")
  p.add_argument("--face-size", type=int, default=32, help="S, side of the face crops")
  p.add_argument("--margin", type=float, default=0.25,
                 help="face crop side = detected box side * (1 + 2 * margin)")
  p.add_argument("--detector", default="", choices=[""] + detect.available_detectors(),
                 help="face detector (data_prep/detect.py registry; default: the front "
                      "end's: haar for --synthetic, dlib_hog for --annotations)")
  p.add_argument("--front-end", default="", choices=["", "synthetic", "real"],
                 help="detector, shot cuts and identity rule (data_prep/pipeline.py "
                      "FRONT_ENDS; default: synthetic for --synthetic, real for --annotations)")
  p.add_argument("--align-crops", action="store_true",
                 help="turn face crops so the eyes are level (dlib 5-point landmarks)")
  p.add_argument("--detector-arg", action="append", default=[], metavar="KEY=VALUE",
                 help="detector argument (repeatable), e.g. --detector-arg upsample=1 "
                      "(dlib_hog: faces from 40 px) or min_neighbors=2 (haar); see "
                      "data_prep/detect.py and detect_dlib.py. Non-default "
                      "arguments show in the config name")
  p.add_argument("--max-video-frames", type=int, default=5400,
                 help="refuse videos longer than this many frames (default 5400: 3 min "
                      "at 30 fps; 0: no cap), recorded in errors.jsonl: decode, 'too "
                      "long: ...'. Counted while decoding, so a container that "
                      "declares too few frames is caught too; non-default values "
                      "show in the config name (_maxfN)")
  p.add_argument("--config-name", help="override the derived config name")
  p.add_argument("--workers", type=int, default=0,
                 help="worker processes for clip processing (0: in this process). A "
                      "worker that dies (segfault, OOM kill) costs only its clip, "
                      "recorded in errors.jsonl (stage 'worker')")
  p.add_argument("--contact-sheets", metavar="DIR", help="write one PNG per clip here")
  p.add_argument("--overwrite", action="store_true", help="rebuild an existing dataset")
  p.add_argument("--beam", action="store_true",
                 help="generate with Apache Beam (DirectRunner unless --beam-option "
                      "--runner=...); needs `pip install apache-beam`")
  p.add_argument("--beam-option", action="append", default=[], metavar="FLAG",
                 help="extra Beam pipeline flag, e.g. --beam-option=--runner=DataflowRunner")
  args = p.parse_args(argv)
  if args.synthetic == bool(args.annotations):
    p.error("give either --synthetic or --annotations (with --video-root)")
  if args.annotations and not args.video_root:
    p.error("--annotations needs --video-root")
  if args.max_video_frames < 0:
    p.error(f"--max-video-frames must be >= 0 (0: no cap), got {args.max_video_frames}")
  splits = {}
  for item in args.annotations:
    split, _, path = item.partition("=")
    if not re.fullmatch(r"[A-Za-z0-9_-]+", split) or not _:
      split, path = args.split, item
    if not split or not path:
      p.error(f"--annotations {item!r}: expected [SPLIT=]FILE")
    if split in splits:
      p.error(f"split {split!r} given twice (--annotations {item!r})")
    splits[split] = path
  args.splits = splits
  try:
    from data_prep import pipeline  # pylint: disable=g-import-not-at-top
    front = args.front_end or ("synthetic" if args.synthetic else "real")
    detector = args.detector or pipeline.FRONT_ENDS[front].get("detector", "haar")
    args.detector_args = detect.checked_detector_args(
        detector, detect.parse_key_values(args.detector_arg))
  except ValueError as e:
    p.error(str(e))
  return args


def make_builder(args) -> builder_lib.Facetrack:
  fields = dict(num_frames=args.num_frames, frame_size=args.frame_size,
                face_size=args.face_size, margin=args.margin, detector=args.detector,
                detector_args=args.detector_args, front_end=args.front_end,
                align_crops=args.align_crops, max_video_frames=args.max_video_frames)
  if args.synthetic:
    fields.update(num_train=args.num_train, num_test=args.num_test, seed=args.seed,
                  takes=args.takes)
  config = builder_lib.make_config("synthetic" if args.synthetic else "fecbench",
                                   name=args.config_name, **fields)
  return builder_lib.Facetrack(
      data_dir=args.data_dir, config=config, annotations=args.splits or None,
      video_root=args.video_root, workers=args.workers,
      contact_sheet_dir=args.contact_sheets)


def main(argv=None) -> int:
  args = parse_args(argv)
  tfds.disable_progress_bar()  # ours counts clips; TFDS's would count records again
  builder = make_builder(args)
  if (builder.data_path / "dataset_info.json").exists():
    if not args.overwrite:
      print(f"{builder_lib.NAME}/{builder.builder_config.name} already built at "
            f"{builder.data_path}; pass --overwrite to rebuild.")
      return 0
    builder.data_path.rmtree()  # (generated synthetic videos are kept and reused)
    builder = make_builder(args)
  download_config = tfds.download.DownloadConfig()
  if args.beam:
    try:
      from apache_beam.options.pipeline_options import PipelineOptions
    except ImportError:
      print(f"{_CLI}: error: --beam needs Apache Beam: pip install apache-beam",
            file=sys.stderr)
      return 2
    flags = ["--runner=DirectRunner", f"--direct_num_workers={max(args.workers, 1)}"]
    download_config.beam_options = PipelineOptions(flags + args.beam_option)
  try:
    builder.download_and_prepare(file_format="array_record",
                                 download_config=download_config)
  except (AnnotationFileError, builder_lib.BuildInputError) as e:
    print(f"{_CLI}: error: {e}", file=sys.stderr)
    return 2
  except clip_pool.WorkerStartError as e:
    print(f"{_CLI}: error: {e}", file=sys.stderr)
    return 1
  except builder_lib.NothingBuiltError as e:
    print(build_summary.format_summary(e.summary), file=sys.stderr)
    print(f"{_CLI}: error: {e}", file=sys.stderr)
    return 1
  print(build_summary.format_summary(builder.summary))
  print(f"summary: {builder.data_path / builder_lib.SUMMARY_FILE}")
  print(f"errors:  {builder.data_path / builder_lib.ERRORS_FILE}")
  return 0


if __name__ == "__main__":
  from facetrack_jax import host_memory
  host_memory.retain_freed_memory(jax_on_cpu_only=False)   # ~10% at 720p (pipeline.py)
  sys.exit(main())
