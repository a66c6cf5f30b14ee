r"""Training: a thin loop over one jitted, sharded train step.

    python -m facetrack_jax.train --config configs/tiny_synthetic.py --workdir W \
        [--config.train.num_steps=200 ...]

Start-up resumes from the latest checkpoint in ``W/checkpoints`` (params,
optimizer state, step and data-iterator position; onto the *current* mesh,
whatever mesh wrote it). Each step logs loss, lr, grad_norm, tokens/s and
examples/s, the model TFLOP/s per device (and MFU on a known accelerator;
:mod:`facetrack_jax.profiling`) to ``W/tb`` and ``W/metrics.jsonl``;
``config.train.profile_start_step`` traces a window of steps for TensorBoard's
Profile tab. With ``config.train.eval_every`` N > 0 the caption loss on every
example of ``config.train.eval_split`` (teacher-forced, no augmentation) is
logged as ``eval_loss`` every N steps and at the end. Checkpoints are written every
``config.train.checkpoint_every`` steps, at the end, and on SIGTERM (then the
process exits 0). A non-finite loss, gradient or updated parameter stops the
run with an error naming the step; that state is not saved.

Multi-host: every process runs this same command; ``jax.distributed`` is
initialised from ``config.distributed`` or the environment
(``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``), and
each process loads the batch rows its devices hold in the mesh: its data
shard (``sharding.data_shards``; disjoint shares, identical data on hosts that
hold replicas of one shard, e.g. a tensor axis across hosts).
"""

from __future__ import annotations

import hashlib
import math
import os
import signal
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging
from flax import nnx
from ml_collections import config_flags
from tqdm import tqdm

from facetrack_jax import (caption_supervision, checkpoint, logging_utils, paths, profiling,
                           sharding, train_step)


class NonFiniteLossError(FloatingPointError):
  """A step's loss, gradient norm or updated parameters are NaN / Inf."""


# -- multi-host ------------------------------------------------------------------
def initialize_distributed(dist_cfg) -> None:
  """``jax.distributed.initialize`` from config or env; a no-op for one process.

  ``config.distributed.coordinator`` ("host:port"), ``num_processes`` and
  ``process_id`` win over ``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES``
  / ``JAX_PROCESS_ID``; ``config.distributed.auto=True`` lets jax detect the
  cluster (TPU pods, SLURM, ...).
  """
  if jax.distributed.is_initialized():
    return
  coordinator = dist_cfg.get("coordinator") or os.environ.get("JAX_COORDINATOR_ADDRESS", "")
  num = int(dist_cfg.get("num_processes") or 0) or int(os.environ.get("JAX_NUM_PROCESSES", "1"))
  pid = dist_cfg.get("process_id")
  pid = int(os.environ.get("JAX_PROCESS_ID", "0")) if pid is None or pid < 0 else int(pid)
  if dist_cfg.get("auto"):
    jax.distributed.initialize()
  elif num > 1:
    if not coordinator:
      raise ValueError(f"{num} processes requested but no coordinator address: set "
                       "config.distributed.coordinator or JAX_COORDINATOR_ADDRESS")
    if not 0 <= pid < num:
      raise ValueError(f"process_id {pid} is not in [0, {num})")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num,
                               process_id=pid)
  logging.info("process %d of %d, %d local / %d global devices", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())


class PreemptionWatch:
  """SIGTERM → stop after the current step. One process: a signal handler.
  Several: jax's preemption sync point, so that all stop at the same step."""

  def __init__(self):
    self._flag = False
    # jax.distributed starts a preemption sync manager that owns SIGTERM.
    self._multi = jax.process_count() > 1 and jax.config.jax_enable_preemption_service
    self._old = None
    if not self._multi:
      self._old = signal.signal(signal.SIGTERM, self._on_term)

  def _on_term(self, signum, frame):
    del signum, frame
    self._flag = True

  def should_stop(self, step: int) -> bool:
    if self._multi:
      from jax.experimental import multihost_utils
      return multihost_utils.reached_preemption_sync_point(step)
    return self._flag

  def close(self):
    if self._old is not None:
      signal.signal(signal.SIGTERM, self._old)
      self._old = None


# -- initial weights ---------------------------------------------------------------
class ConfigError(ValueError):
  """The config names inputs that do not exist or do not fit together."""


def _pure_params(module) -> dict:
  return nnx.to_pure_dict(nnx.state(module, nnx.Param))


def check_init_files(config) -> None:
  """Every non-empty ``config.init.*`` path exists (a ``.safetensors`` file or
  a directory holding some; ``checkpoint``: a directory), checked before
  anything is built or allocated. Raises :class:`ConfigError` naming every
  missing one."""
  init = config.get("init") or {}
  problems = []
  for name in ("vit", "face_vit", "lm"):
    path = init.get(name)
    if not path:
      continue
    p = paths.resolve(path)
    if p.is_dir():
      if not any(p.glob("*.safetensors")):
        problems.append(f"config.init.{name}={path}: directory holds no *.safetensors")
    elif not p.is_file():
      problems.append(f"config.init.{name}={path}: no such file or directory")
  ckpt = init.get("checkpoint")
  if ckpt:
    if any(init.get(n) for n in ("vit", "face_vit", "lm")):
      problems.append(f"config.init.checkpoint={ckpt} replaces every param: leave "
                      "config.init.vit / face_vit / lm empty")
    if not paths.resolve(ckpt).is_dir():
      problems.append(f"config.init.checkpoint={ckpt}: no such directory (a training "
                      "run's W/checkpoints)")
  if problems:
    raise ConfigError("missing or conflicting initial weights:\n  " + "\n  ".join(problems)
                      + "\n(download the HF snapshots and point config.init.* at them, "
                      "or set them to '' to start from a fresh init)")


def imported_params(config, mesh):
  """``params -> params`` replacing towers by ``config.init.{vit, face_vit, lm}``
  safetensors checkpoints (empty path: keep the fresh init), or every param by
  the latest of ``config.init.checkpoint`` (a training run's checkpoints)."""
  init = config.get("init") or {}
  m = config.model
  if init.get("checkpoint"):
    def from_checkpoint(params):
      abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                                             sharding=x.sharding), params)
      logging.info("init all params from %s", init["checkpoint"])
      return checkpoint.restore_params(init["checkpoint"], abstract)
    return from_checkpoint
  loads = {}
  if init.get("vit"):
    loads["vit"] = ("vit", m.vit, init["vit"])
  if init.get("face_vit"):
    if m.shared_towers:
      raise ValueError("config.init.face_vit is set but config.model.shared_towers=True "
                       "(there is no separate face tower)")
    loads["face_vit"] = ("vit", m.face_vit, init["face_vit"])
  if init.get("lm"):
    loads["lm"] = ("lm", m.lm, init["lm"])
  if not loads:
    return None

  def override(params):
    from facetrack_jax.convert.llm import load_llm
    from facetrack_jax.convert.siglip import load_siglip_vision
    params = dict(params)
    for name, (kind, cfg, path) in loads.items():
      if name not in params:
        raise KeyError(f"config.init.{name}: the model has no top-level {name!r} params "
                       f"(has {sorted(params)})")
      load = load_llm if kind == "lm" else load_siglip_vision
      logging.info("init %s from %s", name, path)
      try:
        new = _pure_params(load(path, cfg, mesh=mesh, dtype=jnp.dtype(m.dtype),
                                param_dtype=jnp.dtype(m.param_dtype),
                                scan_layers=m.get("scan_layers", False)))
      except (KeyError, ValueError, FileNotFoundError) as e:
        raise ValueError(f"config.init.{name}={path}: cannot import it as the model's "
                         f"{name!r} ({type(e).__name__}: {e})") from e
      want = jax.tree.map(lambda x: (x.shape, x.dtype), params[name])
      got = jax.tree.map(lambda x: (x.shape, x.dtype), new)
      if want != got:
        raise ValueError(f"config.init.{name}={path}: imported params do not match the "
                         f"model's {name!r} params (shapes/dtypes differ)")
      # Same shapes, the importer placed them on the same logical shardings.
      params[name] = jax.tree.map(lambda x, old: jax.device_put(x, old.sharding),
                                  new, params[name])
    return params

  return override


# -- the loop -------------------------------------------------------------------------
def _check_config(config) -> None:
  t = config.train
  if t.grad_accum < 1:
    raise ValueError(f"config.train.grad_accum must be >= 1, got {t.grad_accum}")
  if config.data.batch_size % t.grad_accum:
    raise ValueError(f"config.data.batch_size={config.data.batch_size} is not divisible "
                     f"by config.train.grad_accum={t.grad_accum}")
  if t.checkpoint_every < 1 or t.log_every < 1:
    raise ValueError("config.train.checkpoint_every and log_every must be >= 1")
  if t.get("eval_every", 0) < 0:
    raise ValueError(f"config.train.eval_every must be >= 0 (0: no held-out loss), "
                     f"got {t.eval_every}")
  profiling.check(t)
  caption_supervision.check(config)


def example_fingerprint(frames, faces) -> str:
  return "sha1:" + hashlib.sha1(np.ascontiguousarray(frames).tobytes()
                                + np.ascontiguousarray(faces).tobytes()).hexdigest()[:16]


class ExampleIdLog:
  """``W/example_ids/process_<i>.jsonl``: the ids of the examples this process
  consumed at each step (``config.train.log_example_ids``; multi-host tests)."""

  def __init__(self, workdir, resume_step: int):
    self.path = (paths.resolve(workdir) / "example_ids"
                 / f"process_{jax.process_index()}.jsonl")
    self._log = paths.JsonlLog(self.path, keep_step=resume_step)

  def write(self, step: int, batch_np: dict) -> None:
    if "id" in batch_np:
      ids = [x.decode() if isinstance(x, bytes) else str(x) for x in np.asarray(batch_np["id"])]
    else:  # pipeline without ids: a content fingerprint (names a clip if not augmented)
      ids = [example_fingerprint(f, c) for f, c in zip(batch_np["frames"], batch_np["faces"])]
    self._log.write({"step": step, "ids": ids})

  def close(self) -> None:
    self._log.close()


def _check_finite(step: int, m: dict, ckpt: checkpoint.Checkpointer) -> None:
  if math.isfinite(m["loss"]) and math.isfinite(m["grad_norm"]) and m["params_finite"]:
    return
  ckpt.wait_until_finished()
  what = ("loss" if not math.isfinite(m["loss"]) else
          "gradient" if not math.isfinite(m["grad_norm"]) else "updated parameters")
  raise NonFiniteLossError(
      f"step {step}: non-finite {what} (loss = {m['loss']}, grad_norm = {m['grad_norm']})"
      f" — stopping; this state is not saved. Last good checkpoint: step "
      f"{ckpt.latest_step()} in {ckpt.directory}")


class HeldOutLoss:
  """The caption loss over every example of a split (``config.train.eval_split``),
  teacher-forced: Σ CE·mask / Σ mask. Every process reads its data shard
  (:func:`input_pipeline.make_eval_batches`: the same number of batches on
  each, the last one padded) and all of them call it at the same steps."""

  def __init__(self, config, tokenizer, setup, shard, source=None):
    from facetrack_jax import input_pipeline
    self._batches = input_pipeline.make_eval_batches(
        config, tokenizer, config.train.get("eval_split", "test"), source=source, shard=shard)
    self._setup, self._step = setup, None

  def __call__(self, params) -> float:
    from facetrack_jax import input_pipeline
    ce, tokens = 0.0, 0.0
    for batch_np in self._batches:
      batch = input_pipeline.to_global(batch_np, self._setup.mesh)
      if self._step is None:
        self._step = train_step.jit_eval_step(self._setup, {k: v.ndim for k, v in batch.items()})
      sums = self._step(params, self._setup.rest, batch)
      ce, tokens = ce + sums["ce"], tokens + sums["tokens"]   # stays on the device
    ce, tokens = jax.device_get((ce, tokens))
    return float(ce) / max(float(tokens), 1.0)


def train(config, workdir: str, *, model_factory=train_step.default_model_factory,
          source=None, eval_source=None) -> dict:
  """Trains to ``config.train.num_steps`` (resuming from ``workdir`` if it
  holds checkpoints). ``source``: a random-access record source to read
  instead of the TFDS dataset; ``eval_source`` likewise for the held-out loss.
  Returns ``{"step", "loss", "preempted"}`` (and ``"eval_loss"``, the last one
  computed, with ``config.train.eval_every``)."""
  from facetrack_jax import input_pipeline
  from facetrack_jax import tokenizer as tokenizer_lib

  initialize_distributed(config.get("distributed") or {})
  _check_config(config)
  check_init_files(config)   # before the tokenizer, the data and any allocation
  t = config.train
  aux_weights = caption_supervision.weights(config)   # training heads: {name: weight}
  workdir = paths.resolve(workdir)   # local or gs:// (facetrack_jax/paths.py)
  mesh = sharding.mesh_from_config(config.mesh)
  shard = sharding.data_shard(mesh)
  logging.info("data shard %d of %d (processes %s)", shard.index, shard.count, shard.processes)
  tokenizer = tokenizer_lib.from_config(config.data)
  data_iter = input_pipeline.make_train_iterator(config, tokenizer, source=source, shard=shard)

  setup = train_step.make_setup(config, mesh, model_factory)
  ckpt = checkpoint.Checkpointer(workdir / "checkpoints",
                                 keep=t.keep_checkpoints, async_save=t.async_checkpointing,
                                 data_shard=shard)
  start, state = ckpt.restore_latest_good(setup.abstract_state, data_iter)
  if start is not None:
    logging.info("resuming from step %d in %s", start, ckpt.directory)
    train_step.init_rest(config, setup, model_factory)
  else:
    start = 0
    state = train_step.init_state(config, setup, model_factory,
                                  params_override=imported_params(config, mesh))
  writer = logging_utils.MetricWriter(workdir, resume_step=start,
                                      remote_every_s=t.get("remote_log_every_s", 30.0))
  ids_log = ExampleIdLog(workdir, start) if t.get("log_example_ids") else None
  watch = PreemptionWatch()
  profiler = profiling.StepProfiler(workdir / "tb", t)
  eval_every = t.get("eval_every", 0)
  held_out = (HeldOutLoss(config, tokenizer, setup, shard, eval_source) if eval_every
              else None)
  eval_loss = None
  peak = profiling.peak_flops_per_device()
  bar = tqdm(total=t.num_steps, initial=start, desc="train", unit="step",
             disable=jax.process_index() != 0, dynamic_ncols=True)
  step_fn, step, logged, loss, preempted = None, start, start, None, False
  try:
    with sharding.use_mesh(mesh):
      tic = time.perf_counter()
      while step < t.num_steps:
        batch_np = next(data_iter)
        if ids_log:
          ids_log.write(step + 1, batch_np)
        batch = input_pipeline.to_global(batch_np, mesh)
        if step_fn is None:
          step_fn = train_step.jit_train_step(
              setup, {k: v.ndim for k, v in batch.items()}, t.grad_accum, aux_weights)
          b, l = batch["tokens"].shape     # every step's: the batch shape is fixed
          step_flops = profiling.model_flops_per_device(config.model, b, l)
        profiler.before(step)
        state, m = step_fn(state, setup.rest, batch)
        step += 1
        profiler.after(step, (state, m))
        preempted = watch.should_stop(step)
        save = preempted or step % t.checkpoint_every == 0 or step == t.num_steps
        evaluate = held_out is not None and not preempted and (
            step % eval_every == 0 or step == t.num_steps)
        log = step % t.log_every == 0 or step == t.num_steps or evaluate
        if save or log:  # never keep a state without looking at it
          m = jax.device_get(m)
          _check_finite(step, m, ckpt)
          loss = float(m["loss"])
        if log:
          toc = time.perf_counter()
          dt = (toc - tic) / (step - logged)
          tic, logged = toc, step
          rate = step_flops / dt
          if evaluate:
            eval_loss = held_out(state["params"])
            tic = time.perf_counter()      # the next steps' rate leaves the evaluation out
          writer.write(step, {"loss": m["loss"], "lr": m["lr"], "grad_norm": m["grad_norm"],
                              "tokens_per_s": b * l / dt, "examples_per_s": b / dt,
                              "model_tflops_per_s_per_device": rate / 1e12,
                              **({"mfu": rate / peak} if peak else {}),
                              **({"eval_loss": eval_loss} if evaluate else {}),
                              **{f"{n}_loss": m[f"{n}_loss"] for n in aux_weights}})
          bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        bar.update(1)
        if save:
          writer.flush()   # a gs:// metrics.jsonl is rewritten, not appended: now
          ckpt.save(step, state, data_iter)
        if preempted:
          logging.warning("SIGTERM: saved step %d, exiting", step)
          break
  finally:
    profiler.close()
    bar.close()
    watch.close()
    writer.close()
    if ids_log:
      ids_log.close()
    ckpt.close()
  out = {"step": step, "loss": loss, "preempted": preempted}
  return out | ({"eval_loss": eval_loss} if held_out else {})


# -- CLI -----------------------------------------------------------------------------------
_CONFIG = config_flags.DEFINE_config_file("config", None, "training config file",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "run directory (checkpoints, logs)")


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    out = train(_CONFIG.value, _WORKDIR.value)
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  except NonFiniteLossError as e:
    logging.error("%s", e)
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  logging.info("done: %s", out)


if __name__ == "__main__":
  from facetrack_jax import host_memory
  # glibc's default malloc: one heap would serialize the input pipeline's threads
  # and XLA's (host_memory module doc); FACETRACK_HOST_MALLOC=retain opts in.
  host_memory.retain_freed_memory(by_default=False)
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main)
