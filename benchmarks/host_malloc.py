"""What :mod:`facetrack_jax.host_memory` buys: the ``small`` train step with
glibc's default malloc against the retained-memory tunables, in alternating
child processes (glibc reads tunables only at start).

    python -m benchmarks.host_malloc [--rounds 2] [--steps 4]

Each child compiles the step, runs 2 warm-up steps, then times ``--steps``
steps and counts their minor page faults and user / system CPU time
(``getrusage``). Writes ``benchmarks/results/host_malloc_<machine>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from benchmarks import common
from benchmarks.run import RESULTS


def child(steps: int) -> dict:
  """Runs in the child: the step's time, faults and CPU split per step."""
  from benchmarks import bench_train
  config = bench_train.load_config("small")
  js = bench_train.build_step(config, common.random_batch(config.model, 8, 64))
  for _ in range(2):
    common.jax_sync(js.step())
  rows = []
  for _ in range(steps):
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    common.jax_sync(js.step())
    t, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    rows.append(dict(seconds=t, minor_faults=r1.ru_minflt - r0.ru_minflt,
                     user_s=r1.ru_utime - r0.ru_utime, sys_s=r1.ru_stime - r0.ru_stime))
  return dict(glibc_tunables=os.environ.get("GLIBC_TUNABLES"), steps=rows)


def run(rounds: int, steps: int) -> dict:
  from facetrack_jax import host_memory
  variants = {"default": dict(os.environ, **{host_memory.OPT_OUT: "default"}),
              "retained": host_memory.environment()}
  variants["default"].pop("GLIBC_TUNABLES", None)
  out = {k: [] for k in variants}
  for r in range(rounds):
    for name, env in variants.items():
      common.log(f"host_malloc: round {r + 1}/{rounds}, {name}")
      p = subprocess.run([sys.executable, "-m", "benchmarks.host_malloc", "--child",
                          "--steps", str(steps)], env=env, capture_output=True, text=True,
                         check=True)
      out[name].append(json.loads(p.stdout.strip().splitlines()[-1]))
  summary = {}
  for name, runs in out.items():
    rows = [s for run_ in runs for s in run_["steps"]]
    summary[name] = {k: statistics.median(s[k] for s in rows)
                     for k in ("seconds", "minor_faults", "user_s", "sys_s")}
  ratio = summary["default"]["seconds"] / summary["retained"]["seconds"]
  return dict(device=common.device_info(), rounds=rounds, steps=steps, runs=out,
              median=summary, default_over_retained=ratio)


def markdown(res: dict, machine: str) -> str:
  m = res["median"]
  lines = [f"# Host malloc on `{machine}` ({res['device']['cpu_model']})", "",
           f"`small` train step, {res['rounds']} alternating rounds × {res['steps']} steps "
           "per variant; medians over all steps.", "",
           "| malloc | s/step | minor faults/step | user s | sys s |", "|---|---|---|---|---|"]
  lines += [f"| {k} | {v['seconds']:.2f} | {v['minor_faults']:.0f} | {v['user_s']:.2f} | "
            f"{v['sys_s']:.2f} |" for k, v in m.items()]
  lines += ["", f"default ÷ retained step time: **{res['default_over_retained']:.2f}×**"]
  return "\n".join(lines) + "\n"


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--rounds", type=int, default=2)
  p.add_argument("--steps", type=int, default=4)
  p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.child:
    print(json.dumps(child(args.steps)))
    return
  res = run(args.rounds, args.steps)
  machine = common.machine_name()
  RESULTS.mkdir(exist_ok=True)
  (RESULTS / f"host_malloc_{machine}.json").write_text(json.dumps(res, indent=1) + "\n")
  md = markdown(res, machine)
  (RESULTS / f"host_malloc_{machine}.md").write_text(md)
  print(md)


if __name__ == "__main__":
  main()
