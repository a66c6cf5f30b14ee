"""Multi-host (issues 4 and 22): the CLIs as two local processes × 4 fake CPU
devices (jax.distributed over 127.0.0.1).

* Training with the tensor axis across the two processes (mesh (4, 1, 2),
  ``dcn_shape=(1, 1, 2)``): both hosts hold every batch row, so they form one
  data shard and must load identical data; the losses match one process × 8
  devices fed that shard's batches.
* Its checkpoint resumes on one process (same data-shard count: works, same
  losses) and refuses to resume on a mesh with two data shards (both counts
  named).
* Evaluation with a workdir per process (no shared filesystem) on two
  disjoint data shards scores every clip of the split.
"""

import json
import shutil
import time

import jax
import numpy as np
import pytest

from facetrack_jax import input_pipeline, sharding, train, train_step
from facetrack_jax.tokenizer import Tokenizer
from tests import train_helpers as th
from tests.conftest import ROOT

STEPS = 4
CROSS = dict(mesh__shape=(4, 1, 2), mesh__dcn_shape=(1, 1, 2))   # tensor pairs across hosts


def _overrides(data, **extra):
  # No augmentation, so that an example's content names its clip even when
  # the pipeline's batches carry no ids (train.example_fingerprint).
  return th.overrides(data, train__num_steps=STEPS, train__log_example_ids=True,
                      train__checkpoint_every=2, data__flip_prob=0.0,
                      data__color_jitter=0.0, data__crop_scale=1.0, **extra)


def _two_processes(module, workdirs, data, o, logs, extra_args=()):
  """Runs ``python -m module`` as processes 0 and 1 (workdir i for process i);
  returns (exit codes, logs)."""
  procs = th.start_processes(module, workdirs, data, o, logs, extra_args)
  return th.wait_all(procs, logs)


def _without_dcn(o, **extra):
  o = {k: v for k, v in o.items() if k != "mesh.dcn_shape"}  # the default: ()
  o.update({k.replace("__", "."): v for k, v in extra.items()})
  return o


def _single_process_reference(config):
  """One process, 8 devices, the same mesh shape: the global batch is the one
  data shard's batch (what each of the two hosts loads)."""
  mesh = sharding.make_mesh(tuple(config.mesh.shape))
  tok = Tokenizer(config.data.tokenizer)
  it = input_pipeline.make_train_iterator(config, tok, shard=sharding.DataShard(0, 1))
  setup = train_step.make_setup(config, mesh)
  state = train_step.init_state(config, setup)
  losses, keys, step_fn = [], [], None
  with sharding.use_mesh(mesh):
    for _ in range(STEPS):
      batch_np = next(it)
      keys += [str(x) for x in batch_np["id"]]
      batch = input_pipeline.to_global(batch_np, mesh)
      if step_fn is None:
        step_fn = train_step.jit_train_step(setup, {k: v.ndim for k, v in batch.items()})
      state, m = step_fn(state, setup.rest, batch)
      losses.append(float(jax.device_get(m["loss"])))
  return losses, keys


@pytest.fixture(scope="module")
def cross_run(tmp_path_factory):
  """The two-process training run with the tensor axis across the hosts."""
  data = th.tiny_data(tmp_path_factory)
  o = _overrides(data, **CROSS)
  root = tmp_path_factory.mktemp("multihost")
  w = root / "w"
  t0 = time.time()
  codes, logs = _two_processes("facetrack_jax.train", [w, w], data, o,
                               [root / f"process_{i}.log" for i in range(2)])
  assert codes == [0, 0], "\n\n".join(log[-3000:] for log in logs)
  print(f"two-process run: {time.time() - t0:.1f} s")
  return data, o, w, logs


def test_tensor_across_hosts_loads_identical_data_and_matches_one_process(cross_run):
  data, o, w, logs = cross_run
  assert "process 1 of 2, 4 local / 8 global devices" in logs[1]
  assert "data shard 0 of 1 (processes (0, 1))" in logs[1]
  assert th.committed_steps(w) == [2, STEPS]
  # One file per data shard, written once (by process 0).
  assert sorted(p.name for p in (w / "checkpoints" / str(STEPS) / "data_iter").glob("*.json")) \
      == ["shard_0-of-1.json"]

  got = th.losses(w)  # written by process 0
  assert sorted(got) == list(range(1, STEPS + 1))
  ref, ref_keys = _single_process_reference(th.make_config(o))
  rel = max(abs(got[s + 1] - ref[s]) / ref[s] for s in range(STEPS))
  print(f"2 processes × 4 devices (tensor across hosts) vs 1 × 8: losses "
        f"{[got[s + 1] for s in range(STEPS)]} vs {ref}; max rel. diff {rel:.1e}")
  assert rel <= 1e-6

  consumed = []
  for i in range(2):
    recs = [json.loads(l) for l in (w / "example_ids" / f"process_{i}.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == list(range(1, STEPS + 1))
    consumed.append([k for r in recs for k in r["ids"]])
  assert consumed[0] == consumed[1] == ref_keys   # replicas: the same rows, in order
  assert len(set(consumed[0])) == th.NUM_TRAIN  # 4 steps × 8 = 2 epochs of 16


def test_resume_on_one_process_with_the_same_data_shards(cross_run, tmp_path):
  """2 processes (1 data shard) -> 1 process × 8 devices (1 data shard):
  the iterator position carries over; steps 3-4 repeat the 2-process losses."""
  data, o, w, _ = cross_run
  w1 = tmp_path / "w"
  shutil.copytree(w, w1)
  shutil.rmtree(w1 / "checkpoints" / str(STEPS))
  p = th.run(w1, data, _without_dcn(o))
  assert p.returncode == 0, p.stderr[-4000:]
  assert "resuming from step 2" in p.stderr
  got, ref = th.losses(w1), th.losses(w)
  rel = max(abs(got[s] - ref[s]) / ref[s] for s in (3, STEPS))
  print(f"resumed on 1 process: {[got[s] for s in (3, STEPS)]} vs {[ref[s] for s in (3, STEPS)]}"
        f"; max rel. diff {rel:.1e}")
  assert rel <= 1e-6


def test_resume_on_another_data_shard_count_stops_naming_both(cross_run, tmp_path):
  data, o, w, _ = cross_run
  w2 = tmp_path / "w"
  shutil.copytree(w, w2)
  o2 = _without_dcn(o, mesh__shape=(8, 1, 1), train__num_steps=STEPS + 2)
  codes, logs = _two_processes("facetrack_jax.train", [w2, w2], data, o2,
                               [tmp_path / f"process_{i}.log" for i in range(2)])
  assert codes[0] != 0 and codes[1] != 0, logs[0][-3000:]
  for log in logs:
    assert "the data iterator was saved by 1 data shard(s) (shard_0-of-1.json); this run " \
           "loads 2 data shard(s) on 2 process(es)" in log, log[-3000:]
  assert th.committed_steps(w2) == [2, STEPS]   # nothing set aside or written


def test_evaluation_without_shared_filesystem_scores_every_clip(cross_run, tmp_path):
  """Each process has its own workdir (a copy of the checkpoints); the two
  data shards' predictions travel by process_allgather."""
  data, o, w, _ = cross_run
  dirs = [tmp_path / f"host_{i}" for i in range(2)]
  for d in dirs:
    shutil.copytree(w / "checkpoints", d / "checkpoints")
  o_eval = _without_dcn(o, mesh__shape=(8, 1, 1))
  t0 = time.time()
  codes, logs = _two_processes("facetrack_jax.evaluate", dirs, data, o_eval,
                               [tmp_path / f"eval_{i}.log" for i in range(2)],
                               ["--split", "train"])
  assert codes == [0, 0], "\n\n".join(log[-3000:] for log in logs)
  print(f"two-process evaluation: {time.time() - t0:.1f} s")
  out = dirs[0] / "eval" / str(STEPS)
  metrics = json.loads((out / "metrics.json").read_text())
  preds = json.loads((out / "predictions.json").read_text())
  import tensorflow_datasets as tfds
  src = tfds.data_source(data["name"], split="train", data_dir=data["data_dir"], download=False)
  want = sorted(np.asarray(src[i]["id"]).item().decode() for i in range(len(src)))
  assert sorted(p["id"] for p in preds) == want and len(want) == th.NUM_TRAIN
  assert metrics["num_predictions"] == metrics["n"] == th.NUM_TRAIN
  assert not (dirs[1] / "eval").exists()   # only process 0 writes
