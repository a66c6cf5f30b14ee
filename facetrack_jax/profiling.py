r"""A window of training steps traced with ``jax.profiler``, and the step's
model FLOP rate per device.

    python -m facetrack_jax.train ... --config.train.profile_start_step=10 \
        --config.train.profile_num_steps=3
    tensorboard --logdir W/tb          # the Profile tab, beside the scalars

Steps ``start + 1 .. start + num`` (the step numbers the logs show) are
traced: the device timeline (XLA ops, collectives, host transfers) and the
host's Python threads. The trace goes to ``W/tb/plugins/profile/<run>/
<host>.xplane.pb``, where TensorBoard's profile plugin (``tensorboard-plugin-
profile``, or XProf) finds it next to the run's scalars. Choose a start after
the first step, which compiles. Only process 0 traces unless
``config.train.profile_all_processes`` (then every host writes its own
``<host>.xplane.pb``: stragglers show up as one host's longer step). A
``gs://`` workdir is traced to a local temporary directory and copied up when
the window closes. ``profile_start_step=0`` (the default) traces nothing.

:func:`model_flops_per_device` is what the trainer logs as
``model_tflops_per_s_per_device`` (and, on an accelerator of
:mod:`facetrack_jax.accelerators`, ``mfu``: that rate ÷ the chip's dense bf16
peak): :func:`facetrack_jax.flops.train_step`'s count, the convention of the
benchmarks and the dry run (3 × forward matmul FLOPs, the LM head at every
position, every parameter counted as trained), ÷ the devices.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import jax
from absl import logging

from facetrack_jax import accelerators, flops, paths


def check(train_cfg) -> None:
  """Refuses a window that cannot be traced, naming the field."""
  start = int(train_cfg.get("profile_start_step", 0))
  num = int(train_cfg.get("profile_num_steps", 1))
  if start < 0:
    raise ValueError(f"config.train.profile_start_step must be >= 0 (0: no trace), got {start}")
  if start and num < 1:
    raise ValueError(f"config.train.profile_num_steps must be >= 1, got {num}")


class StepProfiler:
  """``before(step)`` ahead of running step ``step + 1``, ``after(step, out)``
  once step ``step`` has been dispatched, ``close()`` at the end (stops a
  window the run did not finish, e.g. on SIGTERM)."""

  def __init__(self, logdir, train_cfg):
    self.start = int(train_cfg.get("profile_start_step", 0))
    self.stop = self.start + int(train_cfg.get("profile_num_steps", 1))
    traces = jax.process_index() == 0 or bool(train_cfg.get("profile_all_processes", False))
    self.enabled = self.start > 0 and traces
    self.logdir = paths.resolve(logdir)
    self._local = None       # where jax.profiler writes, while a window is open

  def before(self, step: int) -> None:
    if not self.enabled or step != self.start:
      return
    self._local = (tempfile.mkdtemp(prefix="facetrack_profile_")
                   if paths.is_remote(self.logdir) else os.fspath(self.logdir))
    logging.info("profiling steps %d-%d into %s", self.start + 1, self.stop, self.logdir)
    jax.profiler.start_trace(self._local)

  def after(self, step: int, outputs) -> None:
    if self._local is not None and step >= self.stop:
      jax.block_until_ready(outputs)     # the window's device work, whole
      self._finish()

  def close(self) -> None:
    if self._local is not None:
      self._finish()

  def _finish(self) -> None:
    jax.profiler.stop_trace()
    local, self._local = self._local, None
    if paths.is_remote(self.logdir):
      for f in paths.files_under(local):
        dst = self.logdir / os.path.relpath(f, local)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(f.read_bytes())
      shutil.rmtree(local, ignore_errors=True)
    logging.info("profile written to %s/plugins/profile", self.logdir)


def model_flops_per_device(model_cfg, batch: int, length: int) -> float:
  """Model FLOPs of one train step of a global ``batch`` × ``length`` tokens,
  per device (module docstring)."""
  return flops.train_step(model_cfg, batch, length)["total"] / jax.device_count()


def peak_flops_per_device() -> float | None:
  """The dense bf16 peak of this process's chip, if it is a known accelerator."""
  acc = accelerators.for_device_kind(jax.devices()[0].device_kind)
  return acc.bf16_flops if acc else None
