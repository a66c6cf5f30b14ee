"""Shared by the training tests: a tiny synthetic TFDS set + tokenizer built
once per pytest session, the tiny training config, and runs of the real CLI
(``python -m facetrack_jax.train``) in subprocesses.

Every CLI run of the session shares one persistent XLA compilation cache, so
runs of the same config and mesh compile the train step once (in-process runs
cannot: jax decides once per process whether to use the cache).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

from tests.conftest import ROOT

# Clips: T=4 frames of 32×32, 16×16 face crops (the model config follows).
SIZES = dict(num_frames=4, frame_size=32, face_size=16)
NUM_TRAIN = 16
STEPS = 20            # every reference-config run: same HLO -> one compile per session

_SESSION: dict = {}


def tiny_data(tmp_path_factory) -> dict:
  """``{"data_dir", "name", "tokenizer", "cache"}`` for this pytest session."""
  if "data" in _SESSION:
    return _SESSION["data"]
  from data_prep import builder as builder_lib
  from facetrack_jax.tokenizer import train_tokenizer
  root = tmp_path_factory.getbasetemp() / "train_tiny"
  root.mkdir(exist_ok=True)
  cfg = builder_lib.make_config("synthetic", num_train=NUM_TRAIN, num_test=1, **SIZES)
  b = builder_lib.Facetrack(config=cfg, data_dir=str(root / "tfds"), progress=False)
  b.download_and_prepare(file_format="array_record")
  ann = next((root / "tfds" / "downloads").glob("*/annotations.json"))
  captions = [a["caption"] for a in json.loads(ann.read_text())]
  train_tokenizer(captions, 400, root / "tok.model")
  _SESSION["data"] = dict(data_dir=str(root / "tfds"), name=f"facetrack/{cfg.name}",
                          tokenizer=str(root / "tok.model"), cache=str(root / "xla_cache"))
  return _SESSION["data"]


def overrides(data: dict, **extra) -> dict:
  """Dotted config overrides of the tiny test run (on configs/tiny_synthetic.py)."""
  o = {
      "model.num_frames": SIZES["num_frames"], "model.frame_size": SIZES["frame_size"],
      "model.face_size": SIZES["face_size"], "model.vit.image_size": SIZES["frame_size"],
      "model.face_vit.image_size": SIZES["face_size"],
      "model.vit.depth": 1, "model.face_vit.depth": 1, "model.lm.depth": 1,
      "data.name": data["name"], "data.data_dir": data["data_dir"],
      "data.tokenizer": data["tokenizer"], "data.max_len": 128, "data.batch_size": 8,
      "data.num_threads": 1, "data.prefetch": 2, "data.paraphrase_instructions": False,
      "train.num_steps": STEPS, "train.learning_rate": 1e-2, "train.warmup_steps": 2,
      "train.checkpoint_every": 3, "train.keep_checkpoints": 10,
      "mesh.shape": (8, 1, 1),
  }
  o.update({k.replace("__", "."): v for k, v in extra.items()})
  return o


def make_config(o: dict):
  """configs/tiny_synthetic.py with the overrides applied (in-process runs)."""
  import importlib.util
  spec = importlib.util.spec_from_file_location(
      "tiny_synthetic_cfg", ROOT / "configs" / "tiny_synthetic.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  config = mod.get_config()
  for key, value in o.items():
    *parents, leaf = key.split(".")
    node = config
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


def _flag(value) -> str:
  if isinstance(value, tuple):
    return "(" + ",".join(str(v) for v in value) + ",)"
  return str(value)


def command(workdir, o: dict) -> list[str]:
  return ([sys.executable, "-m", "facetrack_jax.train",
           "--config", str(ROOT / "configs" / "tiny_synthetic.py"), "--workdir", str(workdir)]
          + [f"--config.{k}={_flag(v)}" for k, v in o.items()])


def env(data: dict, devices: int = 8, **extra) -> dict:
  e = dict(os.environ)
  # LLVM -O0 and no expensive passes: ~30% less compile time for these tiny
  # programs (all CLI runs share the flags, so their results stay comparable
  # bit for bit; in-process runs differ from them by ~1e-7 relative).
  e.update(XLA_FLAGS=f"--xla_force_host_platform_device_count={devices} "
                     "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true",
           JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3",
           JAX_COMPILATION_CACHE_DIR=data["cache"],
           JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
           JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
           PYTHONPATH=str(ROOT) + os.pathsep + e.get("PYTHONPATH", ""))
  e.update({k: str(v) for k, v in extra.items()})
  return e


def run(workdir, data, o, *, timeout=600, **env_extra) -> subprocess.CompletedProcess:
  """Runs the CLI to completion; returns the process (stdout/stderr captured)."""
  return subprocess.run(command(workdir, o), env=env(data, **env_extra), cwd=ROOT,
                        capture_output=True, text=True, timeout=timeout)


def start(workdir, data, o, log_path, **env_extra) -> subprocess.Popen:
  log = open(log_path, "a")
  return subprocess.Popen(command(workdir, o), env=env(data, **env_extra), cwd=ROOT,
                          stdout=log, stderr=subprocess.STDOUT)


def records(workdir) -> list[dict]:
  """metrics.jsonl of ``workdir`` (local or gs://)."""
  from facetrack_jax import paths
  return paths.read_jsonl(paths.resolve(workdir) / "metrics.jsonl")


def losses(workdir) -> dict[int, float]:
  recs = records(workdir)
  steps = [r["step"] for r in recs]
  assert len(steps) == len(set(steps)), f"metrics.jsonl repeats steps: {steps}"
  return {r["step"]: r["loss"] for r in recs}


def wait_for(pred, proc: subprocess.Popen, what: str, timeout: float = 600) -> None:
  """Polls ``pred()`` until true; fails if ``proc`` exits first."""
  t0 = time.time()
  while not pred():
    if proc.poll() is not None:
      raise AssertionError(f"process exited ({proc.returncode}) before {what}")
    if time.time() - t0 > timeout:
      proc.send_signal(signal.SIGKILL)
      raise AssertionError(f"timed out waiting for {what}")
    time.sleep(0.05)


def committed_steps(workdir) -> list[int]:
  d = pathlib.Path(workdir) / "checkpoints"
  return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.exists() else []


def reference_run(tmp_path_factory) -> tuple[pathlib.Path, dict[int, float]]:
  """The uninterrupted CLI run of the tiny config (mesh (8,1,1)), once per session."""
  if "reference" not in _SESSION:
    data = tiny_data(tmp_path_factory)
    w = tmp_path_factory.getbasetemp() / "train_reference"
    t0 = time.time()
    p = run(w, data, overrides(data))
    assert p.returncode == 0, p.stderr[-4000:]
    print(f"reference run: {time.time() - t0:.1f} s")
    _SESSION["reference"] = (w, losses(w))
  return _SESSION["reference"]


def reference_copy(tmp_path_factory, workdir, last_step: int) -> pathlib.Path:
  """The reference run copied to ``workdir``, its checkpoints after ``last_step`` removed."""
  ref_dir, _ = reference_run(tmp_path_factory)
  shutil.copytree(ref_dir, workdir)
  for s in committed_steps(workdir):
    if s > last_step:
      shutil.rmtree(pathlib.Path(workdir) / "checkpoints" / str(s))
  return pathlib.Path(workdir)


def assert_losses_equal(workdir, ref: dict[int, float], steps: int = STEPS) -> None:
  """Every step 1..steps logged once, each loss bit-identical to ``ref``."""
  got = losses(workdir)
  assert sorted(got) == list(range(1, steps + 1)), sorted(got)
  mismatched = [s for s in got if got[s] != ref[s]]
  assert not mismatched, {s: (got[s], ref[s]) for s in mismatched}


def tiny_hf_weights(config, directory) -> None:
  """Random tiny HF ``SiglipVisionModel`` (MAP head) and ``Qwen2ForCausalLM``
  (untied) of ``config.model``'s shapes, saved as safetensors with
  ``save_pretrained`` under ``directory/{vit,lm}``; ``config.init.vit`` /
  ``config.init.lm`` point at them."""
  import pytest
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  torch.manual_seed(0)
  directory = pathlib.Path(directory)
  v, lm = config.model.vit, config.model.lm
  transformers.SiglipVisionModel(transformers.SiglipVisionConfig(
      hidden_size=v.width, intermediate_size=v.mlp_dim, num_hidden_layers=v.depth,
      num_attention_heads=v.num_heads, image_size=v.image_size, patch_size=v.patch_size,
      layer_norm_eps=v.layernorm_eps, vision_use_head=True)).save_pretrained(directory / "vit")
  transformers.Qwen2ForCausalLM(transformers.Qwen2Config(
      vocab_size=lm.vocab_size, hidden_size=lm.width, num_hidden_layers=lm.depth,
      num_attention_heads=lm.num_heads, num_key_value_heads=lm.num_kv_heads,
      intermediate_size=lm.mlp_dim, rms_norm_eps=lm.rms_eps, rope_theta=lm.rope_theta,
      tie_word_embeddings=False, max_position_embeddings=lm.max_len)).save_pretrained(
          directory / "lm")
  config.init.vit, config.init.lm = str(directory / "vit"), str(directory / "lm")


def free_port() -> int:
  import socket
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def start_processes(module: str, workdirs, data: dict, o: dict, logs, extra_args=(), *,
                    config: str = "tiny_synthetic.py", devices: int = 4,
                    **env_extra) -> list[subprocess.Popen]:
  """Starts ``python -m module`` as processes 0..n-1 of one jax.distributed
  job on 127.0.0.1 (workdir i and log i for process i; ``devices`` CPU
  devices each)."""
  port = free_port()
  procs = []
  for i, w in enumerate(workdirs):
    cmd = ([sys.executable, "-m", module, "--config", str(ROOT / "configs" / config),
            "--workdir", str(w)] + [f"--config.{k}={_flag(v)}" for k, v in o.items()]
           + list(extra_args))
    procs.append(subprocess.Popen(
        cmd, env=env(data, devices=devices, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                      JAX_NUM_PROCESSES=len(workdirs), JAX_PROCESS_ID=i, **env_extra),
        cwd=ROOT, stdout=open(logs[i], "w"), stderr=subprocess.STDOUT))
  return procs


def wait_all(procs, logs, timeout: float = 600) -> tuple[list[int], list[str]]:
  """Exit codes and log texts of ``procs`` (killed if still running after ``timeout``)."""
  try:
    codes = [p.wait(timeout=timeout) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  return codes, [pathlib.Path(log).read_text() for log in logs]
