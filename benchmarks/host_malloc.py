"""What :mod:`facetrack_jax.host_memory` buys, and where it costs: glibc's
default malloc against the retained-memory tunables, in alternating child
processes (glibc reads tunables only at start).

    python -m benchmarks.host_malloc [--rounds 2] [--steps 4]
    python -m benchmarks.host_malloc --trainer --data-dir runs/data [--steps 150]

Default: the ``small`` train step alone (no input pipeline). Each child
compiles the step, runs 2 warm-up steps, then times ``--steps`` steps and
counts their minor page faults and user / system CPU time (``getrusage``).
Writes ``benchmarks/results/host_malloc_<machine>.{json,md}``.

``--trainer``: the demo's own training (``facetrack_jax.train.train`` on the
full-size demo config, its grain pipeline in threads beside the step,
checkpoints every 100 steps) for ``--steps`` steps on the demo's built data
(``--data-dir``: what ``make demo`` made, ``data``); per child the
examples/s after step 20 (from its ``metrics.jsonl``) and the wall time.
Writes ``host_malloc_trainer_<machine>.{json,md}``.
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


def trainer_child(steps: int, data_dir: str) -> dict:
  """Runs in the child: the demo's training for ``steps`` steps in a scratch
  workdir; examples/s per logged step after step 20, wall and CPU time."""
  import pathlib
  import tempfile
  from facetrack_jax import main, train
  from facetrack_jax.logging_utils import read_metrics
  from absl import logging
  logging.set_verbosity(logging.WARNING)
  config = main.load_config("full", [f"--config.train.num_steps={steps}"], data_dir)
  r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
  with tempfile.TemporaryDirectory() as workdir:
    train.train(config, workdir)
    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    recs = read_metrics(pathlib.Path(workdir) / "metrics.jsonl")
  rate = [r["examples_per_s"] for r in recs if r["step"] > 20]
  return dict(glibc_tunables=os.environ.get("GLIBC_TUNABLES"), wall_s=wall,
              examples_per_s=statistics.median(rate), minor_faults=r1.ru_minflt - r0.ru_minflt,
              user_s=r1.ru_utime - r0.ru_utime, sys_s=r1.ru_stime - r0.ru_stime)


def check_data_dir(data_dir: str) -> None:
  """A clear error if ``data_dir`` holds no built full-size demo set."""
  import pathlib
  from facetrack_jax import main
  config = main.load_config("full", [], data_dir)
  built = pathlib.Path(config.data.data_dir) / config.data.name
  if not built.is_dir() or not pathlib.Path(config.data.tokenizer).is_file():
    raise SystemExit(f"error: --data-dir {data_dir}: no built demo set ({built}) or "
                     f"tokenizer ({config.data.tokenizer}); run `make demo` first")


def run(rounds: int, steps: int, data_dir: str | None = None) -> dict:
  from facetrack_jax import host_memory
  variants = {"default": dict(os.environ, **{host_memory.OPT_OUT: "default"}),
              "retained": host_memory.environment()}
  variants["default"].pop("GLIBC_TUNABLES", None)
  out = {k: [] for k in variants}
  for r in range(rounds):
    for name, env in variants.items():
      common.log(f"host_malloc: round {r + 1}/{rounds}, {name}")
      cmd = [sys.executable, "-m", "benchmarks.host_malloc", "--child", "--steps", str(steps)]
      cmd += ["--trainer", "--data-dir", data_dir] if data_dir else []
      p = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
      out[name].append(json.loads(p.stdout.strip().splitlines()[-1]))
  if data_dir:
    summary = {name: {k: statistics.median(r[k] for r in runs) for k in
                      ("examples_per_s", "wall_s", "minor_faults", "user_s", "sys_s")}
               for name, runs in out.items()}
    ratio = summary["default"]["examples_per_s"] / summary["retained"]["examples_per_s"]
    return dict(device=common.device_info(), workload="trainer", rounds=rounds, steps=steps,
                runs=out, median=summary, default_over_retained_speed=ratio)
  summary = {}
  for name, runs in out.items():
    rows = [s for run_ in runs for s in run_["steps"]]
    summary[name] = {k: statistics.median(s[k] for s in rows)
                     for k in ("seconds", "minor_faults", "user_s", "sys_s")}
  ratio = summary["default"]["seconds"] / summary["retained"]["seconds"]
  return dict(device=common.device_info(), rounds=rounds, steps=steps, runs=out,
              median=summary, default_over_retained=ratio)


def markdown(res: dict, machine: str) -> list[str]:
  """The results table, a line each."""
  m = res["median"]
  if res.get("workload") == "trainer":
    lines = [f"# Host malloc, the demo's training, on `{machine}` ({res['device']['cpu_model']})",
             "", f"`facetrack_jax.train` on the full-size demo config and data, {res['steps']} "
             f"steps per child, {res['rounds']} alternating rounds; medians over the children.",
             "", "| malloc | examples/s (after step 20) | wall s | minor faults | user s | sys s |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {k} | {v['examples_per_s']:.1f} | {v['wall_s']:.0f} | {v['minor_faults']:.0f} "
              f"| {v['user_s']:.0f} | {v['sys_s']:.1f} |" for k, v in m.items()]
    lines += ["", "default ÷ retained training speed: "
              f"**{res['default_over_retained_speed']:.2f}×**"]
    return lines
  lines = [f"# Host malloc on `{machine}` ({res['device']['cpu_model']})", "",
           f"`small` train step, {res['rounds']} alternating rounds × {res['steps']} steps "
           "per variant; medians over all steps.", "",
           "| malloc | s/step | minor faults/step | user s | sys s |", "|---|---|---|---|---|"]
  lines += [f"| {k} | {v['seconds']:.2f} | {v['minor_faults']:.0f} | {v['user_s']:.2f} | "
            f"{v['sys_s']:.2f} |" for k, v in m.items()]
  lines += ["", f"default ÷ retained step time: **{res['default_over_retained']:.2f}×**"]
  return lines


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--rounds", type=int, default=2)
  p.add_argument("--steps", type=int, default=None, help="per child (default 4, 150 with --trainer)")
  p.add_argument("--trainer", action="store_true",
                 help="the demo's training on its built data instead of the small step")
  p.add_argument("--data-dir", default="data", help="with --trainer: the demo's data")
  p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  args.steps = args.steps or (150 if args.trainer else 4)
  if args.child:
    print(json.dumps(trainer_child(args.steps, args.data_dir) if args.trainer
                     else child(args.steps)))
    return
  if args.trainer:
    check_data_dir(args.data_dir)
  res = run(args.rounds, args.steps, args.data_dir if args.trainer else None)
  machine = common.machine_name()
  RESULTS.mkdir(exist_ok=True)
  out = RESULTS / f"host_malloc{'_trainer' if args.trainer else ''}_{machine}.json"
  common.write_result(out, res, markdown(res, machine))


if __name__ == "__main__":
  main()
