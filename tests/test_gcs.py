"""The gs:// layers against a local GCS emulator (tests/gcs_emulator.py; no
mock). The CLIs' train -> kill -9 -> resume -> evaluate with workdir, data,
tokenizer and weights on gs:// is tests/test_paper_gcs.py."""

from etils import epath

from facetrack_jax import paths
from tests import gcs_emulator


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


def test_remote_jsonl_log_keeps_steps_up_to_the_resume_step(tmp_path):
  with gcs_emulator.emulator(tmp_path / "emulator.log"):
    path = f"gs://{gcs_emulator.BUCKET}/run/metrics.jsonl"
    log = paths.JsonlLog(path, keep_step=0, remote_every_s=3600)
    for step in (1, 2, 3):
      log.write({"step": step, "loss": float(step)})
    assert paths.read_jsonl(path) == []   # not yet rewritten (GCS cannot append)
    log.flush()
    assert [r["step"] for r in paths.read_jsonl(path)] == [1, 2, 3]
    log.write({"step": 4})
    log.close()
    resumed = paths.JsonlLog(path, keep_step=2)   # a run resumed from step 2
    resumed.close()
    assert [r["step"] for r in paths.read_jsonl(path)] == [1, 2]
    assert paths.resolve(path) == epath.Path(path) and str(paths.resolve(path)) == path
