"""TFDS builder ``facetrack``: videos -> main-character face tracks -> ArrayRecord.

Works without TensorFlow: features are ``Tensor`` (raw BYTES encoding) and
``Text`` only, written as ``array_record`` and read back with
``tfds.data_source``. Raw bytes rather than JPEG: readers get the contract's
uint8 arrays with no decode step (TFDS's image decoding needs TensorFlow; a
JPEG path would mean cv2 decoding in every input pipeline) and writes are
~16x faster; the price is size, ~123 KB per clip at T=8, 64 px, 32 px
(~120 MB per 1,000 clips). For much larger frames, JPEG bytes would pay off.

Configs (``facetrack/<config>``; T, H = W, S and the detector live in the
config, non-default values show in its name, see ``make_config``):
- ``synthetic``: clips made by ``data_prep.synthetic.generate`` into
  ``<data_dir>/downloads/``, then run through ``process_video`` (the real
  decode/detect/track/crop path). One generation of ``num_train + num_test``
  clips with ``seed``; ids sorted, the last ``num_test`` are the test split.
- ``fecbench``: any FEC-Bench-format annotation file per split (builder kwarg
  ``annotations={"test": "A.json"}``) and the user's ``video_root``.

Example features: ``frames uint8[T,H,W,3]``, ``faces uint8[T,S,S,3]``,
``face_mask bool[T]``, ``face_boxes float32[T,4]`` (x0,y0,x1,y1 in [0,1]),
``caption``, ``id``, ``video``, ``source`` (Text; read back as ``bytes``).

Every clip that cannot be used is skipped and recorded; after the build the
version directory holds ``errors.jsonl`` (split, id, path, stage, reason) and
``build_summary.json`` next to the ArrayRecord shards (and, for clips with
ground truth, ``ground_truth_scores.jsonl``: each clip's score, the per-frame
identities and the descriptor distance it was linked with). One clip's work is
``clip_job.run_job``; with ``workers >= 1`` clips run in ``clip_pool.ClipPool``,
where a worker that dies (segfault, OOM kill) costs only its clip (stage
"worker", "worker died: signal SIGSEGV"); the summary is
``build_summary.summarize``. Reading (any process):

  ds = tfds.data_source("facetrack/synthetic", data_dir=D, split="train",
                        download=False)   # or open_split(D, "synthetic", "train")
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import os
import pathlib
import time
from typing import Mapping

import numpy as np
import tensorflow_datasets as tfds
import tqdm
from etils import epath

from data_prep import annotations as ann_lib
from data_prep.build_summary import summarize
from data_prep.clip_job import ClipJob, ClipOutcome, error_record, run_job, worker_threads
from data_prep.clip_pool import ClipPool

NAME = "facetrack"
ERRORS_FILE = "errors.jsonl"
SUMMARY_FILE = "build_summary.json"
SCORES_FILE = "ground_truth_scores.jsonl"   # per clip with ground truth: score, identities


class BuildInputError(ValueError):
  """The build's inputs (video root, annotation kwargs) are unusable."""


class NothingBuiltError(RuntimeError):
  """No clip of the whole build could be used; ``.summary`` says why."""

  def __init__(self, message: str, summary: dict):
    super().__init__(message)
    self.summary = summary


@dataclasses.dataclass
class FacetrackConfig(tfds.core.BuilderConfig):
  """``kind`` is "synthetic" or "fecbench"; num_train/num_test/seed are for
  "synthetic" only."""
  kind: str = "fecbench"
  num_frames: int = 8      # T
  frame_size: int = 64     # H = W of the global view
  face_size: int = 32      # S
  margin: float = 0.25     # face crop side = box side * (1 + 2 * margin)
  detector: str = ""       # "": the front end's (pipeline.FRONT_ENDS)
  detector_args: tuple = ()  # sorted (key, value) pairs for the detector, e.g. (("min_neighbors", 2),)
  front_end: str = ""      # "synthetic" or "real" (pipeline.FRONT_ENDS); "": by kind
  align_crops: bool = False  # face crops turned so the eyes are level (crop.crop_aligned)
  min_video_frames: int = 2  # a still cannot show facial dynamics: skipped
  max_video_frames: int = 5400  # longer videos are refused (PrepConfig); 0: no cap
  num_train: int = 2000
  num_test: int = 200
  seed: int = 0
  takes: int = 1           # synthetic clips per cast (same people and set, other events)


_NAME_TAGS = (("num_frames", "t"), ("frame_size", "f"), ("face_size", "s"),
              ("margin", "m"), ("detector", ""), ("detector_args", "det-"),
              ("front_end", "fe-"), ("align_crops", "aligned"),
              ("min_video_frames", "minf"), ("max_video_frames", "maxf"),
              ("num_train", "train"),
              ("num_test", "test"), ("seed", "seed"), ("takes", "k"))
_SYNTHETIC_ONLY = ("num_train", "num_test", "seed", "takes")


def make_config(kind: str = "synthetic", *, name: str | None = None,
                **fields) -> FacetrackConfig:
  """A config whose name is ``kind`` plus a tag per non-default field, e.g.
  ``make_config("synthetic", num_frames=4, num_train=6)`` ->
  ``synthetic_t4_train6``. ``name`` overrides the derived name."""
  if kind not in ("synthetic", "fecbench"):
    raise ValueError(f"config kind must be 'synthetic' or 'fecbench', got {kind!r}")
  default = FacetrackConfig(name=kind, kind=kind)
  cfg = dataclasses.replace(default, **fields)
  cfg.detector_args = tuple(sorted(tuple(kv) for kv in cfg.detector_args))

  def value(f):   # detector_args (("min_neighbors", 2),) -> "min_neighbors2"
    v = getattr(cfg, f)
    if isinstance(v, bool):
      return ""
    return "-".join(f"{k}{a}" for k, a in v) if f == "detector_args" else v

  tags = [f"{tag}{value(f)}" for f, tag in _NAME_TAGS
          if getattr(cfg, f) != getattr(default, f)
          and (kind == "synthetic" or f not in _SYNTHETIC_ONLY)]
  cfg.name = name or "_".join([kind] + tags)
  cfg.version = tfds.core.Version("1.0.0")
  cfg.description = (f"{kind} clips, T={cfg.num_frames}, frames {cfg.frame_size}px, "
                     f"faces {cfg.face_size}px, front end {front_end_of(cfg)}, detector "
                     f"{cfg.detector or 'default'}"
                     + (f" {dict(cfg.detector_args)}" if cfg.detector_args else ""))
  return cfg


def front_end_of(cfg: FacetrackConfig) -> str:
  """The config's front end: its own, else "synthetic" for the synthetic set
  and "real" for everything built from the user's videos."""
  return cfg.front_end or ("synthetic" if cfg.kind == "synthetic" else "real")


class Facetrack(tfds.core.GeneratorBasedBuilder):
  """Face-track clips (see module docstring). Extra constructor kwargs are
  only needed to *build*: ``annotations`` ({split: json path}) and
  ``video_root`` for fecbench, ``workers`` (processes, ``clip_pool.ClipPool``;
  0 = in this process, where a crashing decoder takes the build with it),
  ``contact_sheet_dir`` (one PNG per clip), ``progress`` (tqdm bar)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  BUILDER_CONFIGS = [make_config("synthetic"), make_config("fecbench")]
  DEFAULT_CONFIG_NAME = "synthetic"

  # TFDS derives code_path via importlib_resources (a backport not installed
  # on Python >= 3.9); our module path is all it needs.
  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    return epath.Path(__file__)

  def __init__(self, *, annotations: Mapping[str, str] | None = None,
               video_root: str | None = None, workers: int = 0,
               contact_sheet_dir: str | None = None, progress: bool = True,
               **kwargs):
    self._annotations = dict(annotations or {})
    self._video_root = video_root
    self._workers = workers
    self._contact_sheet_dir = contact_sheet_dir
    self._progress = progress
    self._records: list[dict] = []
    self._dropped: list[str] = []
    cfg = kwargs.get("config")
    known = {c.name: c for c in self.BUILDER_CONFIGS}
    if isinstance(cfg, FacetrackConfig) and cfg.name in known:  # TFDS wants that object
      if cfg != known[cfg.name]:
        raise BuildInputError(f"config name {cfg.name!r} is the built-in {known[cfg.name]}; "
                              "give a config with other settings another name")
      kwargs["config"] = known[cfg.name]
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    c = self.builder_config
    t, h, s = c.num_frames, c.frame_size, c.face_size
    raw = functools.partial(tfds.features.Tensor, encoding=tfds.features.Encoding.BYTES)
    return self.dataset_info_from_configs(
        description="Video clips with the main character's face track and a "
                    "facial-dynamics caption (FaceTrack-MM / FEC-Bench format).",
        features=tfds.features.FeaturesDict({
            "frames": raw(shape=(t, h, h, 3), dtype=np.uint8),
            "faces": raw(shape=(t, s, s, 3), dtype=np.uint8),
            "face_mask": raw(shape=(t,), dtype=np.bool_),
            "face_boxes": raw(shape=(t, 4), dtype=np.float32),
            "caption": tfds.features.Text(), "id": tfds.features.Text(),
            "video": tfds.features.Text(), "source": tfds.features.Text(),
        }),
        homepage="https://arxiv.org/abs/2501.07978")

  @property
  def prep_config(self):
    from data_prep import pipeline
    c = self.builder_config
    front = dict(pipeline.FRONT_ENDS[front_end_of(c)])
    if c.detector:
      front["detector"] = c.detector
    return pipeline.PrepConfig(num_frames=c.num_frames, frame_size=c.frame_size,
                               face_size=c.face_size, margin=c.margin,
                               detector_kwargs=tuple(c.detector_args),
                               align_crops=c.align_crops,
                               max_video_frames=c.max_video_frames, **front)

  # --- inputs ---

  def _synthetic_inputs(self, dl_manager) -> tuple[dict[str, str], str]:
    from data_prep import synthetic
    c = self.builder_config
    if c.takes < 1 or c.num_train % c.takes:
      raise BuildInputError(f"synthetic config {c.name}: num_train={c.num_train} must be a "
                            f"multiple of takes={c.takes} (no cast in both splits)")
    root = pathlib.Path(dl_manager.download_dir) / (
        f"facetrack_synthetic_n{c.num_train + c.num_test}_seed{c.seed}_takes{c.takes}")
    all_json = root / "annotations.json"
    if not all_json.exists():  # generated once, shared by every size config
      synthetic.generate(str(root), num_clips=c.num_train + c.num_test, seed=c.seed,
                         workers=max(1, self._workers), takes=c.takes)
    records = sorted(json.loads(all_json.read_text()), key=lambda r: str(r.get("id")))
    parts = {"train": records[:c.num_train], "test": records[c.num_train:]}
    out = {}
    for split, recs in parts.items():
      if recs:
        out[split] = str(root / f"annotations_{split}.json")
        pathlib.Path(out[split]).write_text(json.dumps(recs))
    return out, str(root)

  def _jobs(self, dl_manager) -> dict[str, list[ClipJob]]:
    """Loads and validates annotations; bad entries go to ``self._records``."""
    if self.builder_config.kind == "synthetic":
      annotations, video_root = self._synthetic_inputs(dl_manager)
    else:
      annotations, video_root = self._annotations, self._video_root
      if not annotations or not video_root:
        raise BuildInputError(
            f"{NAME}/{self.builder_config.name} is built from your videos: pass "
            "annotations={split: json} and video_root=DIR (CLI: python -m "
            "data_prep.build --annotations test=A.json --video-root DIR --data-dir D)")
    root = pathlib.Path(video_root)
    if not root.is_dir():
      raise BuildInputError(f"video root {str(root)!r} is not a directory")
    seen: dict[str, str] = {}
    jobs = {}
    for split, json_path in annotations.items():
      entries, errors = ann_lib.load_annotations(json_path, seen=seen)
      self._records += [error_record(split, e) for e in errors]
      jobs[split] = []
      for e in entries:
        gt = root / "ground_truth" / f"{e.id}.json"
        # ids are safe file names (annotations.unsafe_id)
        sheet = (os.path.join(self._contact_sheet_dir, split, e.id + ".png")
                 if self._contact_sheet_dir else None)
        jobs[split].append(ClipJob(split, e, str(root / e.video),
                                   str(gt) if gt.is_file() else None, sheet))
    return jobs

  # --- generation ---

  def _split_generators(self, dl_manager):
    jobs = self._jobs(dl_manager)
    run = functools.partial(run_job, prep_cfg=self.prep_config,
                            min_video_frames=self.builder_config.min_video_frames)
    if self._use_beam:
      prefix = os.fspath(epath.Path(self.data_dir) / "clip_records")
      return {split: _beam_split(split, js, run, f"{prefix}-{split}")
              for split, js in jobs.items()}
    total = sum(len(js) for js in jobs.values())
    self._bar = tqdm.tqdm(total=total, desc=f"{NAME}/{self.builder_config.name}",
                          unit="clip", disable=not self._progress)
    if self._workers >= 1 and total:
      n = min(self._workers, total)
      self._pool = ClipPool(run, n, worker_threads(n))
    generators = {}
    for split, js in jobs.items():
      # TFDS cannot write an empty split: find each split's first good clip
      # here, so a split with none is dropped, not fatal. The rest of the
      # split is processed when TFDS writes it (the pool works ahead a little).
      outcomes = self._pool.imap(js) if self._pool else map(run, js)
      first = None
      for out in outcomes:
        if (first := self._note(out)) is not None:
          break
      if first is None:
        self._dropped.append(split)
      else:
        generators[split] = itertools.chain([first], self._examples(outcomes))
    if not generators:
      self._finish(0.0)  # raises NothingBuiltError
    return generators

  def _note(self, out: ClipOutcome):
    """Records an outcome; returns its (key, example) or None."""
    self._records.append(out.record)
    self._bar.update(1)
    return None if out.example is None else (out.record["id"], out.example)

  def _examples(self, outcomes):
    for out in outcomes:
      if (key_example := self._note(out)) is not None:
        yield key_example

  def _generate_examples(self, **unused):  # splits come from _split_generators
    raise NotImplementedError

  def _download_and_prepare(self, dl_manager, download_config):
    self._use_beam = bool(download_config.beam_runner or download_config.beam_options)
    self._pool = None
    self._bar = None
    t0 = time.perf_counter()
    try:
      super()._download_and_prepare(dl_manager, download_config)
    finally:
      if self._pool is not None:
        self._pool.close()
      if self._bar is not None:
        self._bar.close()
    if self._use_beam:  # per-clip records were written by the pipeline
      for f in sorted(epath.Path(self.data_dir).glob("clip_records-*")):
        self._records += [json.loads(line) for line in f.read_text().splitlines() if line]
        f.unlink()
    self._finish(time.perf_counter() - t0)

  def _finish(self, wall_seconds: float) -> None:
    """Writes errors.jsonl and build_summary.json next to the shards (the
    incomplete dir TFDS renames on success), or raises NothingBuiltError."""
    name = f"{NAME}/{self.builder_config.name}"
    final = epath.Path(self.data_dir).parent / str(self.version)  # not the tmp dir
    summary = summarize(self._records, dataset=name, path=str(final),
                        wall_seconds=wall_seconds, dropped_splits=self._dropped)
    errors = "".join(json.dumps({k: r[k] for k in ("split", "id", "path", "stage", "reason")}) + "\n"
                     for r in self._records if not r["ok"])
    if summary["clips_ok"] == 0:
      # The incomplete dir is deleted on failure: keep errors beside it.
      failed = final.parent / f"failed_build_{ERRORS_FILE}"
      failed.parent.mkdir(parents=True, exist_ok=True)
      failed.write_text(errors)
      raise NothingBuiltError(
          f"{name}: none of the {summary['clips_total']} clips could be built "
          f"(skipped by stage: {summary['skipped_by_stage']}); "
          f"every error is in {failed}", summary)
    out = epath.Path(self.data_dir)
    (out / ERRORS_FILE).write_text(errors)
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=1))
    scored = [dict(split=r["split"], id=r["id"], score=r["score"], identity=r.get("identity"))
              for r in self._records if r["ok"] and r.get("score")]
    if scored:
      (out / SCORES_FILE).write_text("".join(json.dumps(r) + "\n" for r in scored))
    self.summary = summary


def _beam_split(split: str, jobs: list[ClipJob], run, records_prefix: str):
  """The split as an Apache Beam PTransform (pod-scale builds):
  Create(jobs) | Map(run_job); each clip's JSON record goes to
  ``<records_prefix>*.jsonl`` for the summary, good clips become examples."""
  import apache_beam as beam  # pylint: disable=g-import-not-at-top

  @beam.ptransform_fn
  def process(pipeline):
    outcomes = (pipeline
                | f"Jobs_{split}" >> beam.Create(jobs)
                | f"Process_{split}" >> beam.Map(run))
    _ = (outcomes
         | f"Record_{split}" >> beam.Map(lambda o: json.dumps(o.record))
         | f"WriteRecords_{split}" >> beam.io.WriteToText(
             records_prefix, file_name_suffix=".jsonl"))
    return (outcomes
            | f"Good_{split}" >> beam.Filter(lambda o: o.example is not None)
            | f"Example_{split}" >> beam.Map(lambda o: (o.record["id"], o.example)))
  return process()  # pylint: disable=no-value-for-parameter


def open_split(data_dir: str, config: str = "synthetic", split: str = "train"):
  """The ArrayRecord data source of ``facetrack/<config>`` (random access,
  numpy examples; text features come back as ``bytes``). Needs no
  TensorFlow; equivalent to ``tfds.data_source(f"facetrack/{config}",
  data_dir=data_dir, split=split, download=False)``."""
  return tfds.data_source(f"{NAME}/{config}", data_dir=data_dir, split=split,
                          download=False)
