"""Host memory: keep freed buffers in the process instead of handing them back
to the kernel every step (CPU backend, glibc).

    if __name__ == "__main__":              # each CLI, before anything else runs
      from facetrack_jax import host_memory
      host_memory.retain_freed_memory()

Why: on the CPU backend every XLA buffer is a ``malloc``. glibc serves large
ones with fresh ``mmap``s (and per-thread arenas it trims) and returns them on
``free``, so each train step of the ``small`` config touched ~570k new pages:
2-3 s of kernel time (page faults + zeroing) in a 7-9 s step on the 2-core VM.
With ``GLIBC_TUNABLES`` ``mmap_max=0`` (no per-buffer mmaps),
``arena_max=1`` (one heap) and a 4 GiB ``trim_threshold`` (keep freed memory)
the step has 0 page faults: 6.55 s against 7.35 s per step
(``python -m benchmarks.host_malloc``, 2026-12-03; ``benchmarks/README.md``).
The cost: the process's resident size stays at its peak, as with any caching
allocator.

Where it costs more than it buys: one heap serializes every thread's
``malloc``. The trainer runs its grain input pipeline in threads beside XLA's
own, and there the demo's training was 1.02-1.18x faster without the tunables
(``python -m benchmarks.host_malloc --trainer``, 2026-12-07; by wall time in
every pair of runs, though ~25M page faults per 150 steps came back). So the trainer and
the demo (``main``) keep glibc's default unless ``FACETRACK_HOST_MALLOC=retain``
(``by_default=False``), and so does ``evaluate``, which reads its batches the
same way (its 10 s in the demo not measured apart); the step benchmarks (one
step, no pipeline) and ``data_prep`` (each clip worker a process) re-execute
by default.

glibc reads its tunables only at process start (``mallopt`` at run time did
not remove the faults: measured), so :func:`retain_freed_memory` re-executes
the same command line once with them set. It does nothing when they are
already set, off Linux, when JAX will not run on the CPU, when
``FACETRACK_HOST_MALLOC=default``, or, for a caller that asks only on request
(``by_default=False``), unless ``FACETRACK_HOST_MALLOC=retain``.
"""

from __future__ import annotations

import os
import platform
import sys

TUNABLES = ("glibc.malloc.mmap_max=0:glibc.malloc.arena_max=1:"
            "glibc.malloc.trim_threshold=4294967296")
OPT_OUT = "FACETRACK_HOST_MALLOC"


def wanted(environ=None, by_default: bool = True) -> bool:
  """Whether this process should re-execute with :data:`TUNABLES`;
  ``by_default=False``: only if ``FACETRACK_HOST_MALLOC=retain``."""
  environ = os.environ if environ is None else environ
  choice = environ.get(OPT_OUT)
  if (choice in ("default", "reexecuted") or TUNABLES in environ.get("GLIBC_TUNABLES", "")
      or (not by_default and choice != "retain")):
    return False
  return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def cpu_only(environ=None) -> bool:
  """Whether JAX will run on the CPU, decided *without* starting a backend (a
  multi-host job must call ``jax.distributed.initialize`` first): the
  ``JAX_PLATFORMS`` variable if set, else no accelerator plugin installed."""
  environ = os.environ if environ is None else environ
  if environ.get("JAX_PLATFORMS"):
    return environ["JAX_PLATFORMS"].split(",")[0].strip() == "cpu"
  from importlib import metadata
  names = {(d.metadata["Name"] or "").lower() for d in metadata.distributions()}
  return not any(n.startswith(("jax-cuda", "jax_cuda", "jax-rocm", "jax_rocm", "libtpu"))
                 for n in names)


def environment(environ=None) -> dict[str, str]:
  """``environ`` with :data:`TUNABLES` appended to any ``GLIBC_TUNABLES``."""
  env = dict(os.environ if environ is None else environ)
  env["GLIBC_TUNABLES"] = ":".join(x for x in (env.get("GLIBC_TUNABLES"), TUNABLES) if x)
  env[OPT_OUT] = "reexecuted"        # never twice, even if glibc drops the variable
  return env


def retain_freed_memory(jax_on_cpu_only: bool = True, by_default: bool = True) -> None:
  """Re-executes this command line with :data:`TUNABLES` (see the module doc);
  returns normally when that is not wanted. Call it before any work starts.

  ``by_default=False``: only when ``FACETRACK_HOST_MALLOC=retain`` (processes
  that run an input pipeline in threads beside the step: the module doc).

  ``jax_on_cpu_only=False``: also when JAX would run on an accelerator, for
  host-bound work such as ``data_prep`` (every decoded 720p frame is a fresh
  ``mmap`` there too: ~4k page faults per 16-frame clip)."""
  if not wanted(by_default=by_default) or (jax_on_cpu_only and not cpu_only()):
    return
  print(f"host_memory: re-executing with GLIBC_TUNABLES={TUNABLES} "
        f"(set {OPT_OUT}=default to skip)", file=sys.stderr, flush=True)
  os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environment())
