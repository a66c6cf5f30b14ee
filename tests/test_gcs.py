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


def _values(step):
  import numpy as np   # random: incompressible, so the array is a data file of its own
  return np.random.default_rng(step).standard_normal(1 << 16).astype(np.float32)


def test_damaged_checkpoint_on_gcs_is_set_aside(tmp_path):
  """Checkpointer on gs://: a damaged newest checkpoint is copied to
  checkpoints.damaged/ and deleted (an object store has no directory rename);
  the previous one restores."""
  import jax
  import numpy as np
  from jax.sharding import NamedSharding, PartitionSpec as P
  from facetrack_jax import checkpoint, sharding
  mesh = sharding.make_mesh((8, 1, 1))
  put = lambda x: jax.device_put(x, NamedSharding(mesh, P()))
  with gcs_emulator.emulator(tmp_path / "emulator.log"):
    d = epath.Path(f"gs://{gcs_emulator.BUCKET}/run/checkpoints")
    ckpt = checkpoint.Checkpointer(d, async_save=False)
    for step in (1, 2):
      ckpt.save(step, {"w": put(_values(step))})
    ckpt.close()
    files = [f for f in paths.files_under(d / "2" / "state") if f.stat().length > 1024]
    big = max(files, key=lambda f: f.stat().length)
    big.write_bytes(big.read_bytes()[:8])   # truncated
    ckpt = checkpoint.Checkpointer(d, async_save=False)
    abstract = {"w": jax.ShapeDtypeStruct((1 << 16,), np.float32, sharding=NamedSharding(mesh, P()))}
    step, state = ckpt.restore_latest_good(abstract)
    ckpt.close()
    assert step == 1 and np.array_equal(np.asarray(state["w"]), _values(1))
    assert not (d / "2").exists()
    moved = list((d.parent / "checkpoints.damaged").iterdir())
    assert len(moved) == 1 and moved[0].name.startswith("2-")
    assert len(paths.files_under(moved[0])) >= len(files)
