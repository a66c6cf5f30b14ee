"""TFDS build (ArrayRecord, no TensorFlow): the synthetic config, the CLI on a
mix of good and bad inputs (issue §4), all-bad builds, and the Beam path."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys

import av
import numpy as np
import pytest
import tensorflow_datasets as tfds

from data_prep import build, builder as builder_lib, clip_job, detect, video
from tests.conftest import ROOT

SIZES = dict(num_frames=4, frame_size=32, face_size=16)
SYNTH = builder_lib.make_config("synthetic", num_train=3, num_test=1, **SIZES)


def _read_ids(data_dir, config, split):
  ds = tfds.data_source(f"facetrack/{config}", data_dir=str(data_dir), split=split,
                        download=False)
  return sorted(ds[i]["id"].decode() for i in range(len(ds))), ds


def _write_mp4(path, frames_nhwc):
  with av.open(str(path), "w") as c:
    s = c.add_stream("libx264", rate=8)
    s.height, s.width, s.pix_fmt = frames_nhwc.shape[1], frames_nhwc.shape[2], "yuv420p"
    for f in frames_nhwc:
      for pkt in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
        c.mux(pkt)
    for pkt in s.encode():
      c.mux(pkt)


@pytest.fixture(scope="module")
def synthetic_build(tmp_path_factory):
  """facetrack/synthetic built through the TFDS API: generator -> process_video."""
  data_dir = tmp_path_factory.mktemp("tfds")
  b = builder_lib.Facetrack(config=SYNTH, data_dir=str(data_dir), progress=False)
  b.download_and_prepare(file_format="array_record")
  gen_dir = next((data_dir / "downloads").glob("facetrack_synthetic_*"))
  return data_dir, b, gen_dir


def test_synthetic_config_builds_both_splits_without_tensorflow(synthetic_build):
  data_dir, b, gen_dir = synthetic_build
  assert "tensorflow" not in sys.modules
  assert SYNTH.name == "synthetic_t4_f32_s16_train3_test1"
  ids = sorted(str(r["id"]) for r in json.loads((gen_dir / "annotations.json").read_text()))
  train, ds = _read_ids(data_dir, SYNTH.name, "train")
  test, _ = _read_ids(data_dir, SYNTH.name, "test")
  assert train == ids[:3] and test == ids[3:]   # deterministic split of sorted ids
  ex = ds[0]
  t, h, s = SIZES["num_frames"], SIZES["frame_size"], SIZES["face_size"]
  assert ex["frames"].shape == (t, h, h, 3) and ex["frames"].dtype == np.uint8
  assert ex["faces"].shape == (t, s, s, 3) and ex["faces"].dtype == np.uint8
  assert ex["face_mask"].shape == (t,) and ex["face_mask"].dtype == np.bool_
  assert ex["face_boxes"].shape == (t, 4) and ex["face_boxes"].dtype == np.float32
  assert ex["source"] == b"synthetic" and ex["video"].startswith(b"synthetic/")
  assert ex["caption"] and ex["frames"].std() > 0 and ex["face_mask"].any()
  summary = json.loads((b.data_path / builder_lib.SUMMARY_FILE).read_text())
  assert summary["clips_ok"] == 4 and summary["clips_skipped"] == 0
  assert summary["frames_decoded"] > 0 and summary["detections"] > 0
  assert set(summary["seconds_per_stage"]) >= {"decode", "detect", "track", "crop"}
  track = summary["track_selection"]  # ground_truth/<id>.json came with the clips
  assert track["clips_with_ground_truth"] == 4
  assert 0 <= track["main_correct_pct"] <= 100 and 0 <= track["mean_iou"] <= 1
  assert (b.data_path / builder_lib.ERRORS_FILE).read_text() == ""


def test_synthetic_casts_never_straddle_the_split(tmp_path):
  """--takes k: the train clip count must be a multiple of k, else a cast
  would act in both splits; refused before anything is generated."""
  cfg = builder_lib.make_config("synthetic", num_train=3, num_test=1, takes=2, **SIZES)
  assert cfg.name.endswith("_k2")
  with pytest.raises(builder_lib.BuildInputError, match="multiple of takes=2"):
    builder_lib.Facetrack(config=cfg, data_dir=str(tmp_path), progress=False
                          ).download_and_prepare(file_format="array_record")
  assert not list(tmp_path.rglob("*.mp4"))


def test_crop_margin_reaches_the_pipeline():
  cfg = builder_lib.make_config("synthetic", num_train=3, num_test=1, margin=0.1, **SIZES)
  assert "_m0.1" in cfg.name
  assert builder_lib.Facetrack(config=cfg).prep_config.margin == 0.1
  assert builder_lib.Facetrack(config=SYNTH).prep_config.margin == 0.25


def test_video_length_cap_reaches_the_pipeline_and_names_the_config(tmp_path, capsys):
  args = build.parse_args(["--synthetic", "--data-dir", str(tmp_path),
                           "--max-video-frames", "300"])
  b = build.make_builder(args)
  assert b.builder_config.name == "synthetic_maxf300"
  assert b.prep_config.max_video_frames == 300
  assert builder_lib.Facetrack(config=SYNTH).prep_config.max_video_frames == 5400
  with pytest.raises(SystemExit) as e:
    build.parse_args(["--synthetic", "--data-dir", str(tmp_path), "--max-video-frames", "-1"])
  assert e.value.code == 2 and "--max-video-frames" in capsys.readouterr().err


def test_detector_args_reach_the_pipeline_and_name_the_config(tmp_path, capsys):
  args = build.parse_args(["--synthetic", "--data-dir", str(tmp_path), "--detector-arg",
                           "min_neighbors=2", "--detector-arg", "scale_factor=1.2"])
  b = build.make_builder(args)
  assert b.builder_config.name == "synthetic_det-min_neighbors2-scale_factor1.2"
  kwargs = b.prep_config.detector_kwargs
  assert kwargs == (("min_neighbors", 2), ("scale_factor", 1.2))
  haar = detect.get_detector("haar", **dict(kwargs))
  assert (haar.min_neighbors, haar.scale_factor) == (2, 1.2)
  assert builder_lib.Facetrack(config=SYNTH).prep_config.detector_kwargs == ()
  for bad, said in (("min_neighbours=2", "min_neighbours"), ("channel=blue", "blue"),
                    ("scale_factor", "KEY=VALUE")):
    with pytest.raises(SystemExit) as e:
      build.parse_args(["--synthetic", "--data-dir", str(tmp_path), "--detector-arg", bad])
    assert e.value.code == 2 and said in capsys.readouterr().err


def test_separate_process_reads_with_name_and_data_dir_only(synthetic_build):
  data_dir, _, _ = synthetic_build
  code = ("import sys, tensorflow_datasets as tfds\n"
          f"ds = tfds.data_source('facetrack/{SYNTH.name}', data_dir={str(data_dir)!r}, "
          "split='train', download=False)\n"
          "ex = ds[0]\n"
          "assert 'data_prep' not in sys.modules and 'tensorflow' not in sys.modules\n"
          "print(len(ds), ex['frames'].shape, ex['faces'].shape)\n")
  out = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True,
                       text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.split("\n")[0] == "3 (4, 32, 32, 3) (4, 16, 16, 3)"


@pytest.fixture(scope="module")
def mixed_inputs(synthetic_build, tmp_path_factory):
  """Good synthetic clips plus every kind of bad input of issue §4."""
  _, _, gen_dir = synthetic_build
  root = tmp_path_factory.mktemp("videos")
  shutil.copytree(gen_dir / "synthetic", root / "synthetic")
  shutil.copytree(gen_dir / "ground_truth", root / "ground_truth")
  good = sorted(json.loads((gen_dir / "annotations.json").read_text()),
                key=lambda r: str(r["id"]))
  bad_dir = root / "bad"
  bad_dir.mkdir()
  (bad_dir / "zero.mp4").write_bytes(b"")
  first = root / good[0]["video"]
  data = first.read_bytes()
  (bad_dir / "truncated.mp4").write_bytes(data[: len(data) // 2])
  (bad_dir / "text.mp4").write_text("this is not a video\n" * 20)
  frames = video.decode_video(str(first)).frames
  _write_mp4(bad_dir / "noface.mp4",
             np.repeat(np.linspace(0, 255, frames[0].size).reshape(
                 (1,) + frames.shape[1:]).astype(np.uint8), 12, axis=0))
  _write_mp4(bad_dir / "oneframe.mp4", frames[:1])
  outside = root.parent / f"{root.name}_outside.mp4"   # a good video outside the root
  shutil.copy(first, outside)
  bad = {  # id -> expected stage(s)
      "zero": ({"id": "zero", "video": "bad/zero.mp4", "caption": "c"}, {"open"}),
      "truncated": ({"id": "truncated", "video": "bad/truncated.mp4", "caption": "c"},
                    {"open", "decode"}),
      "text": ({"id": "text", "video": "bad/text.mp4", "caption": "c"}, {"open"}),
      "missing": ({"id": "missing", "video": "bad/missing.mp4", "caption": "c"}, {"open"}),
      "noface": ({"id": "noface", "video": "bad/noface.mp4", "caption": "c"},
                 {"detect", "track"}),
      "oneframe": ({"id": "oneframe", "video": "bad/oneframe.mp4", "caption": "c"},
                   {"decode"}),
      "nocaption": ({"id": "nocaption", "video": good[1]["video"], "caption": ""},
                    {"annotation"}),
      "novideo": ({"id": "novideo", "caption": "c"}, {"annotation"}),
      # names that leave the video root (the file they name exists and is good)
      "updir": ({"id": "updir", "video": f"../{outside.name}", "caption": "c"},
                {"annotation"}),
      "absolute": ({"id": "absolute", "video": str(outside), "caption": "c"},
                   {"annotation"}),
      "../escape": ({"id": "../escape", "video": good[1]["video"], "caption": "c"},
                    {"annotation"}),
  }
  recs = [r for r, _ in bad.values()]
  train = good[:2] + recs[:4] + good[2:3] + recs[4:]
  (root / "train.json").write_text(json.dumps(train))
  (root / "test.json").write_text(json.dumps(good[3:]))
  (root / "val.json").write_text(json.dumps(
      [{"id": "gone", "video": "bad/gone.mp4", "caption": "c"}]))
  return root, {r["id"] for r in good[:3]}, {r["id"] for r in good[3:]}, bad


def test_cli_skips_and_records_every_bad_input(mixed_inputs, tmp_path, capsys):
  root, good_train, good_test, bad = mixed_inputs
  data_dir, sheets = tmp_path / "tfds", tmp_path / "sheets"
  argv = ["--annotations", f"train={root / 'train.json'}",
          "--annotations", f"test={root / 'test.json'}",
          "--annotations", f"val={root / 'val.json'}",
          "--video-root", str(root), "--data-dir", str(data_dir),
          "--contact-sheets", str(sheets), "--workers", "2",
          "--front-end", "synthetic"]   # drawn faces: the synthetic front end (Haar)
  for k, v in SIZES.items():
    argv += [f"--{k.replace('_', '-')}", str(v)]
  assert build.main(argv) == 0
  printed = capsys.readouterr().out
  config = "fecbench_t4_f32_s16_fe-synthetic"
  out_dir = data_dir / "facetrack" / config / "1.0.0"

  errors = [json.loads(line) for line in (out_dir / "errors.jsonl").read_text().splitlines()]
  by_id = {e["id"]: e for e in errors if e["id"]}
  for clip_id, (_, stages) in bad.items():
    e = by_id[clip_id]
    assert e["stage"] in stages, e
    assert set(e) == {"split", "id", "path", "stage", "reason"} and e["reason"]
  assert by_id["novideo"]["path"] == f"{root / 'train.json'}[10]"  # the entry, not a file
  assert by_id["gone"]["split"] == "val" and len(errors) == len(bad) + 1

  summary = json.loads((out_dir / "build_summary.json").read_text())
  assert summary["clips_ok"] == len(good_train) + len(good_test)
  assert summary["clips_skipped"] == len(bad) + 1
  assert sum(summary["skipped_by_stage"].values()) == len(bad) + 1
  assert summary["skipped_by_stage"]["annotation"] == 5
  assert "'..' component" in by_id["updir"]["reason"]
  assert "absolute path" in by_id["absolute"]["reason"]
  assert "path separator" in by_id["../escape"]["reason"]
  assert summary["dropped_splits"] == ["val"]
  assert summary["track_selection"]["clips_with_ground_truth"] == len(good_train) + len(good_test)
  assert f"{summary['clips_ok']} of {summary['clips_total']} clips built" in printed

  assert _read_ids(data_dir, config, "train")[0] == sorted(good_train)
  assert _read_ids(data_dir, config, "test")[0] == sorted(good_test)
  assert sorted(p.stem for p in sheets.rglob("*.png")) == sorted(good_train | good_test)
  assert build.main(argv) == 0  # a second run leaves the built dataset alone
  assert "already built" in capsys.readouterr().out


# Test seam of the worker-death test: the build's real pool runs this in its
# spawned workers (by reference, so it lives here at module level). A clip
# whose id names a death dies the way a decoder segfault, the OOM killer or a
# hard exit kills a worker; every other clip is the real run_job.
_DEATHS = {"dies_segv": lambda: os.kill(os.getpid(), signal.SIGSEGV),
           "dies_kill": lambda: os.kill(os.getpid(), signal.SIGKILL),
           "dies_exit": lambda: os._exit(3)}


def _run_job_or_die(job, **kwargs):
  if job.entry.id in _DEATHS:
    _DEATHS[job.entry.id]()
  return clip_job.run_job(job, **kwargs)


def test_a_worker_that_dies_costs_only_its_clip(mixed_inputs, tmp_path, monkeypatch):
  """Segfault, SIGKILL (what the OOM killer sends) and os._exit in a build
  worker: each clip is recorded as failed with the cause, the build neither
  hangs nor loses a good clip. The first clip of the split dies too: the
  search for a split's first good clip runs in the pool as well."""
  root, good_train, _, _ = mixed_inputs
  good = [r for r in json.loads((root / "train.json").read_text()) if r["id"] in good_train]
  dying = [{"id": i, "video": good[0]["video"], "caption": "c"} for i in _DEATHS]
  ann = tmp_path / "a.json"
  ann.write_text(json.dumps(dying[:1] + good[:2] + dying[1:2] + good[2:] + dying[2:]))
  monkeypatch.setattr(builder_lib, "run_job", _run_job_or_die)
  config = builder_lib.make_config("fecbench", front_end="synthetic", **SIZES)
  b = builder_lib.Facetrack(config=config, data_dir=str(tmp_path / "tfds"), workers=2,
                            annotations={"train": str(ann)}, video_root=str(root),
                            progress=False)
  b.download_and_prepare(file_format="array_record")
  errors = {e["id"]: e for e in map(json.loads, (b.data_path / builder_lib.ERRORS_FILE)
                                    .read_text().splitlines())}
  assert set(errors) == set(_DEATHS)
  assert errors["dies_segv"]["reason"] == "worker died: signal SIGSEGV"
  assert errors["dies_kill"]["reason"].startswith("worker died: signal SIGKILL")
  assert errors["dies_exit"]["reason"] == "worker died: exit status 3"
  assert {e["stage"] for e in errors.values()} == {"worker"}
  assert all(e["path"] == str(root / good[0]["video"]) for e in errors.values())
  assert _read_ids(tmp_path / "tfds", config.name, "train")[0] == sorted(good_train)
  assert b.summary["clips_ok"] == len(good_train) and b.summary["skipped_by_stage"] == {
      "worker": 3}


def test_a_worker_that_cannot_start_stops_the_build_clearly():
  """A worker dying before it takes a clip is the environment, not a clip:
  an error, not one failed record per clip forever (here: its start-up,
  clip_job.init_worker, is given a thread count it cannot use)."""
  from data_prep import clip_pool
  with pytest.raises(clip_pool.WorkerStartError, match="died before taking a clip"):
    with clip_pool.ClipPool(_run_job_or_die, 1, threads="many") as pool:
      list(pool.imap([None]))


def test_cli_exits_nonzero_when_nothing_can_be_built(mixed_inputs, tmp_path):
  root, _, _, _ = mixed_inputs
  ann = tmp_path / "bad.json"
  ann.write_text(json.dumps([{"id": "z", "video": "bad/zero.mp4", "caption": "c"},
                             {"id": "t", "video": "bad/text.mp4", "caption": "c"},
                             {"id": "x", "caption": "no video"}]))
  out = subprocess.run(
      [sys.executable, "-m", "data_prep.build", "--annotations", str(ann),
       "--video-root", str(root), "--data-dir", str(tmp_path / "tfds")],
      cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert out.returncode == 1, out.stderr[-2000:]
  assert "none of the 3 clips could be built" in out.stderr
  failed = tmp_path / "tfds" / "facetrack" / "fecbench" / "failed_build_errors.jsonl"
  assert str(failed) in out.stderr
  assert len(failed.read_text().splitlines()) == 3
  assert not (tmp_path / "tfds" / "facetrack" / "fecbench" / "1.0.0").exists()


def test_cli_rejects_bad_arguments(tmp_path, capsys):
  with pytest.raises(SystemExit) as e:
    build.main(["--annotations", "a.json", "--data-dir", str(tmp_path)])
  assert e.value.code == 2 and "--video-root" in capsys.readouterr().err
  assert build.main(["--annotations", str(tmp_path / "none.json"), "--video-root",
                     str(tmp_path), "--data-dir", str(tmp_path)]) == 2
  assert "none.json" in capsys.readouterr().err


def test_beam_pipeline_builds_the_same_dataset(mixed_inputs, tmp_path):
  pytest.importorskip("apache_beam", reason="apache-beam not installed (optional, pod-scale)")
  root, good_train, _, bad = mixed_inputs
  ann = tmp_path / "a.json"
  recs = json.loads((root / "train.json").read_text())
  ann.write_text(json.dumps(recs))
  argv = ["--annotations", str(ann), "--video-root", str(root),
          "--data-dir", str(tmp_path / "tfds"), "--beam", "--front-end", "synthetic"]
  for k, v in SIZES.items():
    argv += [f"--{k.replace('_', '-')}", str(v)]
  assert build.main(argv) == 0
  assert _read_ids(tmp_path / "tfds", "fecbench_t4_f32_s16_fe-synthetic", "train")[0] == sorted(
      good_train)
  out_dir = tmp_path / "tfds" / "facetrack" / "fecbench_t4_f32_s16_fe-synthetic" / "1.0.0"
  assert len((out_dir / "errors.jsonl").read_text().splitlines()) == len(bad)
  assert not list(out_dir.glob("clip_records*"))
