"""One clip, the unit of work of the build: the local loop, worker pools and
Apache Beam all map ``run_job`` over ``ClipJob``s (``data_prep/builder.py``).

``run_job`` runs ``pipeline.process_video`` and turns every failure into a
JSON record naming the clip and the stage (never an exception), scores the
chosen track when the clip has ground truth, draws the contact sheet if
asked, and returns the TFDS example of a good clip.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import time

import numpy as np

from data_prep import annotations as ann_lib
from data_prep.errors import ClipError


@dataclasses.dataclass(frozen=True)
class ClipJob:
  split: str
  entry: ann_lib.Entry
  path: str                         # video file on disk
  ground_truth: str | None = None   # <video_root>/ground_truth/<id>.json if present
  contact_sheet: str | None = None  # PNG to write, if asked


@dataclasses.dataclass
class ClipOutcome:
  """``record`` is JSON (split, id, path, ok, stage, reason, stats, score,
  seconds); ``example`` is the TFDS example or None for a skipped clip."""
  record: dict
  example: dict | None = None


def worker_threads(workers: int) -> int:
  """Threads for each of ``workers`` processes sharing this machine's cores."""
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  return max(1, (cores or 1) // max(1, workers))


def init_worker(threads: int) -> None:
  """Initializer of the build's worker processes: ``threads`` each for OpenCV
  and the decoder (``pipeline.limit_threads``), so W workers share the cores
  instead of each starting one thread per core."""
  from data_prep import pipeline
  pipeline.limit_threads(threads)


def error_record(split: str, err: ClipError, seconds: float = 0.0) -> dict:
  return dict(split=split, **err.to_json(), ok=False, stats={}, score=None,
              seconds=seconds)


def _process(job: ClipJob, prep_cfg, min_video_frames: int):
  """process_video with every failure as a ClipError naming the clip."""
  from data_prep import pipeline  # cv2/av are only needed where clips are processed
  try:
    result = pipeline.process_video(job.path, prep_cfg)
  except ClipError as e:
    e.clip_id, e.path = e.clip_id or job.entry.id, e.path or job.path
    raise
  except Exception as e:  # a decoder/detector failure the pipeline did not name
    raise ClipError("process", f"{type(e).__name__}: {e}", clip_id=job.entry.id,
                    path=job.path) from e
  n = result.stats.get("frames_decoded", min_video_frames)
  if n < min_video_frames:
    raise ClipError("decode", f"only {n} frame(s); a clip needs at least "
                    f"{min_video_frames} to show facial dynamics",
                    clip_id=job.entry.id, path=job.path)
  return result


def run_job(job: ClipJob, prep_cfg, min_video_frames: int = 2) -> ClipOutcome:
  """Processes one clip; never raises for a bad clip (it becomes a record).
  A broken ground-truth file or contact sheet does not cost the clip: it is
  counted in ``stats`` (``ground_truth_errors`` / ``contact_sheet_errors``)."""
  from data_prep import contact_sheet, pipeline
  t0 = time.perf_counter()
  entry = job.entry
  try:
    result = _process(job, prep_cfg, min_video_frames)
  except ClipError as e:
    return ClipOutcome(error_record(job.split, e, time.perf_counter() - t0))
  stats, score = dict(result.stats), None
  if job.ground_truth:
    try:
      gt = json.loads(pathlib.Path(job.ground_truth).read_text())
      score = {k: float(v) if isinstance(v, (bool, int, float, np.number)) else v
               for k, v in pipeline.score_against_ground_truth(result, gt).items()}
    except Exception:  # pylint: disable=broad-except
      stats["ground_truth_errors"] = 1
  if job.contact_sheet:
    t1 = time.perf_counter()
    try:
      pathlib.Path(job.contact_sheet).parent.mkdir(parents=True, exist_ok=True)
      contact_sheet.write_contact_sheet(result, job.contact_sheet,
                                        title=f"{entry.id}: {entry.caption[:80]}")
    except Exception:  # pylint: disable=broad-except
      stats["contact_sheet_errors"] = 1
    stats["seconds"] = dict(stats.get("seconds", {}), contact_sheet=time.perf_counter() - t1)
  example = dict(frames=np.asarray(result.frames, np.uint8),
                 faces=np.asarray(result.faces, np.uint8),
                 face_mask=np.asarray(result.face_mask, np.bool_),
                 face_boxes=np.asarray(result.face_boxes, np.float32),
                 caption=entry.caption, id=entry.id, video=entry.video,
                 source=entry.source)
  record = dict(split=job.split, id=entry.id, path=job.path, ok=True, stage=None,
                reason=None, stats=_jsonable(stats), score=_jsonable(score),
                identity=_jsonable(result.identity),
                seconds=time.perf_counter() - t0)
  return ClipOutcome(record, example)


def _jsonable(x):
  if isinstance(x, dict):
    return {str(k): _jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  if isinstance(x, (np.generic, np.ndarray)):
    return x.tolist()
  return x
