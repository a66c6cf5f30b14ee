"""Timing helpers shared by the benchmarks.

Every figure the benchmarks report is the **median** of several timed calls
after warm-up calls (compilation, allocator and thread-pool start-up stay
out). JAX work is synchronised with ``jax.block_until_ready``; torch work on
CPU is synchronous, on CUDA ``torch.cuda.synchronize`` is called.

The peak a model is compared against is measured in the same process, on the
same device, right before and after the model: a large square matmul in the
compute dtype (fp32 on CPU, bf16 on GPU/TPU).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import platform
import re
import socket
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


_T0 = time.perf_counter()


def log(msg: str) -> None:
  """Progress line on stderr with the seconds since import."""
  print(f"[bench {time.perf_counter() - _T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


@dataclasses.dataclass
class Timing:
  """Seconds per call: median, min and max of ``samples``."""
  samples: list[float]

  @property
  def median(self) -> float:
    return statistics.median(self.samples)

  def to_json(self) -> dict:
    return dict(median_s=self.median, min_s=min(self.samples), max_s=max(self.samples),
                repeats=len(self.samples))


def time_calls(fn: Callable[[], Any], *, warmup: int = 1, repeats: int = 5,
               sync: Callable[[Any], Any] = jax.block_until_ready) -> Timing:
  """Calls ``fn()`` ``warmup`` times untimed, then ``repeats`` times timed;
  ``sync(result)`` waits for asynchronous work before the clock stops."""
  if repeats < 1:
    raise ValueError(f"time_calls: repeats must be >= 1, got {repeats}")
  for _ in range(warmup):
    sync(fn())
  samples = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    sync(fn())
    samples.append(time.perf_counter() - t0)
  return Timing(samples)


jax_sync = jax.block_until_ready


def torch_sync(_=None):
  """``sync`` for :func:`time_calls` on torch work."""
  import torch
  if torch.cuda.is_available():
    torch.cuda.synchronize()


def cores() -> int:
  """CPU cores this process may run on (its affinity mask; ``run --cores``)."""
  return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def torch_thread_counts() -> list[int]:
  """Thread counts the torch reference is timed at: :func:`cores` (what
  a user sets) and 1. On a shared machine torch's OpenMP threads spin at
  barriers while a sibling thread is descheduled, which can make small ops
  tens of times slower; the 1-thread figure shows how much of the gap that
  is. Ratios are reported against the *faster* of the two."""
  n = cores() or 1
  return [n] if n == 1 else [n, 1]


def in_torch_threads(n: int, fn: Callable[[], Any]) -> Callable[[], Any]:
  """``fn`` run with ``torch.set_num_threads(n)``."""
  import torch

  def wrapped():
    torch.set_num_threads(n)
    return fn()
  return wrapped


def torch_thread_variants(fn: Callable[[], Any]) -> tuple[dict[int, Callable[[], Any]], dict]:
  """``fn`` at each of :func:`torch_thread_counts`, each called once untimed
  (warm-up, also timed for the record). A thread count whose warm-up is > 3x
  slower than 1 thread's is dropped (it is OpenMP spinning on a shared
  machine, and timing it further would only burn the time budget).
  Returns ``({threads: fn}, {"warmup_s": ..., "dropped": {threads: why}})``."""
  variants = {n: in_torch_threads(n, fn) for n in torch_thread_counts()}
  warm = {n: time_calls(f, warmup=0, repeats=1, sync=torch_sync).median
          for n, f in variants.items()}
  dropped = {}
  for n in list(variants):
    if n != 1 and warm[n] > 3 * warm[1]:
      dropped[str(n)] = (f"warm-up {warm[n]:.1f} s vs {warm[1]:.1f} s at 1 thread: not timed "
                         "further (OpenMP threads spinning on a shared machine)")
      variants.pop(n)
      log(f"torch at {n} threads: {dropped[str(n)]}")
  return variants, dict(warmup_s={str(n): v for n, v in warm.items()}, dropped=dropped)


# -- the device ----------------------------------------------------------------------
def read_bandwidth(mbytes: int = 512, repeats: int = 10) -> float:
  """Bytes/s of a jitted fp32 ``sum`` over ``mbytes`` MB (median of
  ``repeats``): the memory read bandwidth a weight-bound step can reach."""
  x = jnp.ones((mbytes * 2**20 // 4,), jnp.float32)
  f = jax.jit(jnp.sum)
  t = time_calls(lambda: f(x), warmup=2, repeats=repeats).median
  del x
  return mbytes * 2**20 / t


def cpu_model() -> str:
  """The host CPU from ``/proc/cpuinfo``: model name, family, model, e.g.
  "AMD EPYC (family 25, model 17)". A VM's model name alone can hide different
  generations (this project's 2-core "AMD EPYC" VM measured 408 and 186 GFLOP/s
  fp32 peaks on different days), so the peak is always measured too."""
  try:
    info = {}
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
      key, _, value = line.partition(":")
      info.setdefault(key.strip(), value.strip())
    return f"{info['model name']} (family {info['cpu family']}, model {info['model']})"
  except (OSError, KeyError):
    return platform.processor() or platform.machine()


def device_info() -> dict:
  d = jax.devices()[0]
  return dict(platform=d.platform, device_kind=d.device_kind, num_devices=jax.device_count(),
              cpu_count=os.cpu_count(), cores=cores(), host=socket.gethostname(),
              processor=platform.processor() or platform.machine(), cpu_model=cpu_model(),
              glibc_tunables=os.environ.get("GLIBC_TUNABLES"),
              jax=jax.__version__, load_average=list(os.getloadavg()))


def machine_name() -> str:
  """``cpu-2c-<host>`` or ``gpu-<device kind>`` (lower case, [a-z0-9-])."""
  d = jax.devices()[0]
  if d.platform == "cpu":
    name = f"cpu-{os.cpu_count()}c-{socket.gethostname()[:16]}"
    if cores() != os.cpu_count():
      name += f"-pinned{cores()}"
  else:
    name = f"{d.platform}-{jax.device_count()}x-{d.device_kind}"
  return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")


def compute_dtype() -> jnp.dtype:
  """The dtype the peak is measured in: fp32 on CPU (bf16 is not faster
  there), bf16 on accelerators."""
  return jnp.dtype(jnp.float32 if jax.devices()[0].platform == "cpu" else jnp.bfloat16)


def peak_matmul(n: int | None = None, dtype=None, repeats: int = 5, warmup: int = 2) -> dict:
  """FLOP/s of one ``n × n @ n × n`` ``jnp.dot`` (2 n³ FLOPs), median of
  ``repeats``. ``n`` defaults to 2048 on CPU, 8192 on accelerators."""
  on_cpu = jax.devices()[0].platform == "cpu"
  n = n or (2048 if on_cpu else 8192)
  dtype = jnp.dtype(dtype or compute_dtype())
  k1, k2 = jax.random.split(jax.random.key(0))
  a = jax.random.normal(k1, (n, n), dtype)
  b = jax.random.normal(k2, (n, n), dtype)
  dot = jax.jit(jnp.dot)
  t = time_calls(lambda: dot(a, b), warmup=warmup, repeats=repeats)
  return dict(n=n, dtype=str(dtype), flops_per_s=2 * n ** 3 / t.median, **t.to_json())


def torch_peak_matmul(n: int = 2048, repeats: int = 5) -> dict:
  """The same square matmul in torch (fp32), for context: the BLAS torch
  calls may differ from XLA's."""
  import torch
  a, b = torch.randn(n, n), torch.randn(n, n)
  t = time_calls(lambda: a @ b, warmup=2, repeats=repeats, sync=torch_sync)
  return dict(n=n, dtype="float32", threads=torch.get_num_threads(),
              flops_per_s=2 * n ** 3 / t.median, **t.to_json())


def xla_flops(compiled) -> float | None:
  """FLOPs XLA counts for a compiled executable (``cost_analysis``), or None."""
  try:
    cost = compiled.cost_analysis()
  except Exception:  # some backends do not implement it
    return None
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  return None if not cost or "flops" not in cost else float(cost["flops"])


def fmt_rate(x: float, unit: str = "FLOP/s") -> str:
  for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
    if abs(x) >= scale:
      return f"{x / scale:.3g} {prefix}{unit}"
  return f"{x:.3g} {unit}"


def random_batch(model_cfg, batch: int, text_len: int, seed: int = 0) -> dict[str, np.ndarray]:
  """A model batch (host numpy) of the contract's shapes: random frames and
  faces, every 4th frame without a face, a prompt of ``bos, <visual> × N``
  then random text of ``text_len`` tokens, loss on the text."""
  from facetrack_jax.models.facetrack import num_visual_tokens
  rng = np.random.default_rng(seed)
  m = model_cfg
  t, h, s, v = m.num_frames, m.frame_size, m.face_size, m.lm.vocab_size
  n_vis = num_visual_tokens(m)
  length = 1 + n_vis + text_len
  tokens = rng.integers(7, v, (batch, length)).astype(np.int32)
  tokens[:, 0] = 2
  tokens[:, 1:1 + n_vis] = m.visual_token_id
  targets = np.zeros_like(tokens)
  targets[:, :-1] = tokens[:, 1:]
  loss_mask = np.zeros((batch, length), np.float32)
  loss_mask[:, n_vis:-1] = 1.0
  face_mask = np.ones((batch, t), bool)
  face_mask[:, ::4] = False
  return dict(frames=rng.integers(0, 256, (batch, t, h, h, 3), np.uint8),
              faces=rng.integers(0, 256, (batch, t, s, s, 3), np.uint8),
              face_mask=face_mask, tokens=tokens, targets=targets, loss_mask=loss_mask)


# -- a trained sweep run, for the benchmarks that read one ------------------------------
def add_run_args(p) -> None:
  """``--sweep --run --workdir --data-dir``: which trained sweep run to read."""
  p.add_argument("--sweep", required=True, help="the sweep file that made the run")
  p.add_argument("--run", required=True, help="the run's name in that sweep")
  p.add_argument("--workdir", required=True, help="the run's workdir (checkpoints/)")
  p.add_argument("--data-dir", required=True, help="the sweep's --data-dir")


def run_config(p, args):
  """The config of ``args.run`` in ``args.sweep`` (full size, as the sweep
  ran it); a parser error naming the sweep's runs when there is none."""
  from facetrack_jax import sweep
  _, runs = sweep.plan(args.sweep, pathlib.Path(args.workdir).parent, args.data_dir, "full", [])
  by_name = {r.name: r for r in runs}
  if args.run not in by_name:
    p.error(f"--run {args.run!r}: not a run of {args.sweep} (runs: {sorted(by_name)})")
  return by_name[args.run].config


# -- results ---------------------------------------------------------------------------
def write_result(out, result: dict, lines: list[str]) -> int:
  """``result`` as JSON at ``out``, ``lines`` as Markdown beside it (``.md``)
  and on stdout; 0, the benchmark's exit status."""
  path = pathlib.Path(out)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(result, indent=1) + "\n")
  path.with_suffix(".md").write_text("\n".join(lines) + "\n")
  print("\n".join(lines))
  return 0
