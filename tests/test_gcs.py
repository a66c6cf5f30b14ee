"""Workdir and data on ``gs://`` (issue 22, part 3), against a local GCS
emulator (tests/gcs_emulator.py; no mock): the tiny TFDS set and tokenizer
uploaded, then the real CLIs train -> resume -> evaluate with every path a
``gs://`` URI. Checkpoints (orbax/tensorstore), metrics.jsonl, TensorBoard,
the iterator state and the evaluation report all land in the bucket; nothing
is written under a local ``gs:`` directory.
"""

import json
import subprocess
import sys
import time

import pytest
from etils import epath

from facetrack_jax import paths
from tests import gcs_emulator
from tests import train_helpers as th
from tests.conftest import ROOT


def _cli(module, workdir, data, o, env, extra=()):
  cmd = ([sys.executable, "-m", module, "--config", str(ROOT / "configs" / "tiny_synthetic.py"),
          "--workdir", workdir] + [f"--config.{k}={th._flag(v)}" for k, v in o.items()]
         + list(extra))
  return subprocess.run(cmd, env=th.env(data, **env), cwd=ROOT, capture_output=True,
                        text=True, timeout=400)


def test_train_resume_evaluate_with_workdir_and_data_on_gcs(tmp_path_factory, tmp_path):
  data = th.tiny_data(tmp_path_factory)
  with gcs_emulator.emulator(tmp_path / "emulator.log") as (url, env):
    bucket = f"gs://{gcs_emulator.BUCKET}"
    t0 = time.time()
    gcs_emulator.upload_tree(data["data_dir"], f"{bucket}/data/tfds")
    epath.Path(f"{bucket}/data/tok.model").write_bytes(
        epath.Path(data["tokenizer"]).read_bytes())
    gdata = dict(data, data_dir=f"{bucket}/data/tfds", tokenizer=f"{bucket}/data/tok.model")
    w = f"{bucket}/runs/w"
    o = th.overrides(gdata, train__num_steps=4, train__checkpoint_every=2)
    p = _cli("facetrack_jax.train", w, gdata, o, env)
    assert p.returncode == 0, p.stderr[-4000:]
    t1 = time.time()
    o6 = dict(o, **{"train.num_steps": 6})
    p = _cli("facetrack_jax.train", w, gdata, o6, env)
    assert p.returncode == 0, p.stderr[-4000:]
    assert "resuming from step 4" in p.stderr, p.stderr[-3000:]
    t2 = time.time()
    wd = epath.Path(w)
    steps = sorted(int(c.name) for c in (wd / "checkpoints").iterdir() if c.name.isdigit())
    assert steps[-1] == 6 and 4 in steps, steps
    assert (wd / "checkpoints" / "6" / "data_iter" / "shard_0-of-1.json").is_file()
    recs = paths.read_jsonl(wd / "metrics.jsonl")
    assert [r["step"] for r in recs] == list(range(1, 7)), recs
    assert all(isinstance(r["loss"], float) for r in recs)
    assert any(f.name.startswith("events.out.tfevents") for f in (wd / "tb").iterdir())

    p = _cli("facetrack_jax.evaluate", w, gdata, o6, env, ["--split", "train"])
    assert p.returncode == 0, p.stderr[-4000:]
    t3 = time.time()
    out = wd / "eval" / "6"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_predictions"] == metrics["n"] == th.NUM_TRAIN
    assert metrics["workdir"] == w
    for name in ("predictions.json", "per_clip.jsonl", "per_event.json", "report.md"):
      assert (out / name).is_file(), name
  assert not (ROOT / "gs:").exists() and not (tmp_path / "gs:").exists()
  print(f"gs:// train 4 steps {t1 - t0:.1f} s (with upload), resume to 6 {t2 - t1:.1f} s, "
        f"evaluate {t3 - t2:.1f} s")


def test_array_record_reader_needs_the_emulator_setting(tmp_path):
  """ArrayRecord's C++ reader (google-cloud-cpp) ignores STORAGE_EMULATOR_HOST:
  it reads gs:// through CLOUD_STORAGE_EMULATOR_ENDPOINT (paths.emulator_env)."""
  from array_record.python import array_record_module as arm
  local = tmp_path / "x.array_record"
  w = arm.ArrayRecordWriter(str(local), "group_size:1")
  w.write(b"record")
  w.close()
  with gcs_emulator.emulator(tmp_path / "emulator.log"):
    remote = f"gs://{gcs_emulator.BUCKET}/x.array_record"
    epath.Path(remote).write_bytes(local.read_bytes())
    r = arm.ArrayRecordReader(remote)
    assert r.num_records() == 1 and r.read() == b"record"
    r.close()
