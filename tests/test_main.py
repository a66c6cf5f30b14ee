"""The one-command demo at CI size, end to end through the real CLI: synthetic
clips -> TFDS build -> tokenizer -> training -> evaluation -> report.md + loss
PNG; a second run reuses every finished stage and resumes training."""

import json
import math
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from facetrack_jax import caption_supervision, event_supervision
from facetrack_jax import main as demo_lib
from tests.conftest import ROOT


def _main(workdir, data_dir, cache, *extra, timeout=900):
  env = dict(os.environ, FACETRACK_DEMO_SIZE="ci", JAX_COMPILATION_CACHE_DIR=str(cache),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
             PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
  p = subprocess.run([sys.executable, "-m", "facetrack_jax.main", "--workdir", str(workdir),
                      "--data-dir", str(data_dir), *extra], env=env, cwd=ROOT,
                     capture_output=True, text=True, timeout=timeout)
  assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-5000:]
  return p.stdout


@pytest.fixture(scope="module")
def demo(tmp_path_factory, ci_demo_dirs):
  root = tmp_path_factory.mktemp("demo")
  (d, cache), w = ci_demo_dirs, root / "run"
  first = _main(w, d, cache, "--config.train.num_steps=6")    # stops early ...
  second = _main(w, d, cache)                                  # ... the default resumes
  return w, d, first, second


def test_every_stage_runs_and_writes_the_report(demo):
  import tensorflow_datasets as tfds
  w, d, first, _ = demo
  for stage in ("[1/5] data", "[2/5] tokenizer", "[3/5] train", "[4/5] evaluate", "[5/5] report"):
    assert stage in first
  # Data: the synthetic set was generated and built through the detector path.
  name = json.loads((w / "config.json").read_text())["data"]["name"]
  test_src = tfds.data_source(name, split="test", data_dir=str(d / "tfds"), download=False)
  test_ids = sorted(test_src[i]["id"].decode() for i in range(len(test_src)))
  assert len(test_ids) >= 1
  assert list(d.glob("tokenizer_*.model"))

  config = json.loads((w / "config.json").read_text())
  steps = config["train"]["num_steps"]
  preds = json.loads((w / "eval" / str(steps) / "predictions.json").read_text())
  assert [p["id"] for p in preds] == test_ids          # the held-out clips, each once
  metrics = json.loads((w / "eval" / str(steps) / "metrics.json").read_text())
  assert metrics["step"] == steps and metrics["n"] == len(test_ids)
  # The demo's training heads, read on the same clips (head_readout.py).
  heads = json.loads((w / "eval" / str(steps) / "heads.json").read_text())
  assert set(heads) == set(caption_supervision.weights(demo_lib.demo_config("ci")))
  assert set(heads["event"]) == set(event_supervision.EVENT_KEYS)
  assert all(math.isnan(r["auc"]) or 0 <= r["auc"] <= 1 for r in heads["event"].values())

  report = (w / "report.md").read_text()
  assert "| CIDEr | ROUGE-L | AutoDQ | TEM |" in report
  assert "track selection" in report                     # data-prep summary
  assert "![training loss](loss.png)" in report
  assert test_ids[0] in report and "reference:" in report and "generated:" in report
  img = cv2.imread(str(w / "loss.png"))
  assert img is not None and img.shape[0] > 100 and img.shape[1] > 100
  # The held-out loss (train.eval_every=6: steps 6 and 12) is drawn in orange beside it.
  recs = [json.loads(line) for line in (w / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in recs if "eval_loss" in r] == [6, steps]
  orange = (np.abs(img.astype(int) - (0, 140, 255)).sum(-1) < 60).sum()
  assert orange > 50, orange
  stages = json.loads((w / "stages.json").read_text())
  assert set(stages) >= {"data (generate + build)", "tokenizer", "train", "evaluate", "total"}


def test_second_run_reuses_stages_and_resumes_training(demo):
  w, _, first, second = demo
  assert "already built" in second and "exists" in second
  assert "resuming from step 6" in second
  steps = json.loads((w / "config.json").read_text())["train"]["num_steps"]
  assert steps > 6
  # Both evaluations exist: the early stop's and the resumed run's.
  assert (w / "eval" / "6" / "metrics.json").exists()
  assert (w / "eval" / str(steps) / "metrics.json").exists()
  recs = [json.loads(line) for line in (w / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in recs] == list(range(1, steps + 1))   # one log, no repeats


def test_bad_size_and_bad_override_are_clear_errors(tmp_path):
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  base = [sys.executable, "-m", "facetrack_jax.main", "--workdir", str(tmp_path / "w"),
          "--data-dir", str(tmp_path / "d")]
  p = subprocess.run(base + ["--size", "huge"], env=env, cwd=ROOT, capture_output=True,
                     text=True, timeout=120)
  assert p.returncode != 0 and "--size" in p.stderr
  p = subprocess.run(base + ["--size", "ci", "--config.model.no_such_field=3"], env=env,
                     cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert p.returncode != 0 and "no_such_field" in p.stderr
  assert not (tmp_path / "d").exists()          # failed before building anything
