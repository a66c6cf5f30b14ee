"""Running a sweep's runs on this machine (``python -m facetrack_jax.sweep``).

Runs go ``parallel`` at a time as subprocesses (each run's own command,
:attr:`facetrack_jax.sweep.Run.argv`), each pinned to its share of this
process's cores, output in ``<run workdir>/sweep.log``. A run that fails
leaves ``sweep_error.json`` (its last log lines) and the others go on. A
SIGTERM or Ctrl-C sends the runs SIGTERM (they checkpoint and stop), as does
the sweep's death (Linux ``PR_SET_PDEATHSIG``); the same command resumes.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import subprocess
import time

from facetrack_jax.sweep import REPO


def core_groups(parallel: int, cores: list[int]) -> list[list[int] | None]:
  """Each of ``parallel`` slots' cores: a contiguous share of ``cores``
  (one core each, shared round robin, when there are fewer cores than slots;
  ``[None]`` — no pinning — for one slot)."""
  if parallel < 1:
    raise ValueError(f"--parallel must be >= 1, got {parallel}")
  if parallel == 1:
    return [None]
  if parallel > len(cores):
    return [[cores[i % len(cores)]] for i in range(parallel)]
  bounds = [round(i * len(cores) / parallel) for i in range(parallel + 1)]
  return [cores[a:b] for a, b in zip(bounds, bounds[1:])]


def _child_setup(cpus):
  """preexec_fn: pin to ``cpus``; SIGTERM when the sweep dies (Linux)."""
  import ctypes
  try:
    prctl = ctypes.CDLL(None, use_errno=True).prctl
  except (OSError, AttributeError):
    prctl = None

  def setup():
    if prctl is not None:
      prctl(1, signal.SIGTERM)          # PR_SET_PDEATHSIG
    if cpus:
      os.sched_setaffinity(0, cpus)
  return setup


def _error_tail(log: pathlib.Path, n: int = 15) -> list[str]:
  text = log.read_text(errors="replace") if log.exists() else ""
  lines = [ln.rstrip() for ln in re.split(r"[\r\n]", text) if ln.strip()]
  return lines[-n:]


def execute(runs: list[Run], parallel: int, env: dict) -> dict[str, str]:
  """Runs ``runs`` (none of them done), ``parallel`` at a time; returns
  ``{name: "done" | "failed" | "stopped"}``."""
  from tqdm import tqdm
  cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
  groups = core_groups(parallel, cores or list(range(os.cpu_count() or 1)))
  todo, active, outcome = list(runs), {}, {}
  stopping = []
  old = {s: signal.signal(s, lambda *_: stopping.append(1)) for s in (signal.SIGTERM,
                                                                     signal.SIGINT)}
  bar = tqdm(total=len(runs), desc="sweep", unit="run", dynamic_ncols=True)
  try:
    while todo or active:
      if stopping:   # SIGTERM / Ctrl-C: the runs checkpoint and stop; a rerun resumes
        for proc, *_ in active.values():
          proc.send_signal(signal.SIGTERM)
        for slot, (proc, r, _, f) in list(active.items()):
          proc.wait()
          f.close()
          outcome[r.name] = "done" if r.done() else "stopped"
        break
      free = [s for s in range(len(groups)) if s not in active]
      while todo and free:
        r, slot = todo.pop(0), free.pop(0)
        (r.workdir / "sweep_error.json").unlink(missing_ok=True)
        r.workdir.mkdir(parents=True, exist_ok=True)
        log = open(r.workdir / "sweep.log", "a")
        log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {r.command}\n")
        log.flush()
        proc = subprocess.Popen(r.argv, cwd=REPO, env=env, stdout=log,
                                stderr=subprocess.STDOUT, preexec_fn=_child_setup(groups[slot]))
        active[slot] = (proc, r, time.perf_counter(), log)
        bar.set_postfix_str(", ".join(a[1].name for a in active.values()), refresh=True)
      time.sleep(0.5)
      for slot, (proc, r, t0, log) in list(active.items()):
        if proc.poll() is None:
          continue
        log.close()
        del active[slot]
        secs = time.perf_counter() - t0
        if proc.returncode == 0 and r.done():
          outcome[r.name] = "done"
          bar.write(f"[done] {r.name} ({secs:.0f} s)")
        elif proc.returncode == 0 and stopping:
          outcome[r.name] = "stopped"
        else:
          tail = _error_tail(r.workdir / "sweep.log")
          error = (f"exit status {proc.returncode}" if proc.returncode else
                   "exit status 0 but no final evaluation (stopped by a signal?)")
          (r.workdir / "sweep_error.json").write_text(json.dumps(
              {"error": tail[-1] if tail else error, "returncode": proc.returncode,
               "log_tail": tail, "log": str(r.workdir / "sweep.log"), "seconds": secs},
              indent=1) + "\n")
          outcome[r.name] = "failed"
          bar.write(f"[failed] {r.name} ({error}): {tail[-1] if tail else ''}\n"
                    f"  log: {r.workdir / 'sweep.log'}")
        bar.update(1)
  finally:
    bar.close()
    for s, h in old.items():
      signal.signal(s, h)
  return outcome


def child_env(workdir: pathlib.Path) -> dict:
  """The runs' environment: this one, unbuffered, and a persistent XLA
  compilation cache in ``W/xla_cache`` (runs of one shape share compiled
  steps) unless one is set."""
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  if "JAX_COMPILATION_CACHE_DIR" not in env:
    env["JAX_COMPILATION_CACHE_DIR"] = str(workdir / "xla_cache")
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1")
  return env
