r"""Sweeps: one file declares a grid of runs of the demo; run them here or on a cluster.

    python -m facetrack_jax.sweep --sweep configs/sweeps/face_tokens.py --workdir W \
        [--data-dir D] [--size full|ci] [--parallel P] [--only NAME ...] \
        [--print-commands | --prepare-only | --report-only] [--config.x=y ...]

A sweep file (``configs/sweeps/``, big_vision style) defines

* ``get_config(size)``: the config every run starts from (usually
  ``facetrack_jax.main.demo_config(size)``, the demo's); it is also the
  ``--config`` file of each run, so ml_collections field references in it
  (``config.data.max_len = 200 + 8 * config.model.compressor.get_ref(...)``)
  make settings follow a swept one;
* ``get_sweep()``: a list of override dicts ``{"dotted.config.key": value}``,
  one per run, built with :func:`axis`, :func:`seeds`, :func:`product` and
  :func:`zipped`;
* optionally ``METRIC`` (the main metric, default ``"tem"``; one of
  :data:`facetrack_jax.sweep_report.METRICS`).

Each run is ``python -m facetrack_jax.main --config <sweep file> --workdir
W/<name> ...`` with its overrides (``--print-commands`` shows the exact
command): the demo's stages, each skipped when its output exists, so a
finished run is skipped and an interrupted one resumes from its last
checkpoint. A run is named by its overrides (``face_tokens=16,seed=2``:
the last part of each key, the whole key where two keys share it).

Here (:mod:`facetrack_jax.sweep_local`), runs go ``--parallel P`` at a time,
each pinned to its share of this process's cores, with their output in
``W/<name>/sweep.log``; the synthetic
data sets and tokenizers they need are built first, once. Killing the sweep
sends its runs SIGTERM (they checkpoint and stop); run the same command to
continue. A run that fails is recorded (``W/<name>/sweep_error.json``, its
error in the tables) and the sweep goes on; the exit status is 1 if any
failed. Afterwards (and with nothing left to run) the results of every
finished run are gathered (:mod:`facetrack_jax.sweep_report`): ``W/sweep.json``,
``W/sweep.md``, ``W/sweep.png`` and TensorBoard HParams in ``W/hparams``.

``--print-commands`` prints one JSON line per run (``name``, ``workdir``,
``command``: a shell command line that runs as is, ``argv``) and exits, for a
cluster launcher (README: a Slurm array); build the data first with
``--prepare-only``, gather the results afterwards with ``--report-only``
(runs nothing). ``--merge A/sweep.json ...`` takes the finished runs of
earlier sweep.json files (another machine's, another session's) for the runs
not finished in this workdir; the tables name the file each came from.
``--config.x=y`` flags apply to every run (before the run's own overrides).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import pathlib
import re
import shlex
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
SEED_KEYS = ("seed", "data.shuffle_seed")   # an axis of repeats: averaged over, not a point
_SCALARS = (bool, int, float, str)


# -- grid helpers (for sweep files) ---------------------------------------------------
def axis(key: str, values) -> list[dict]:
  """``[{key: v} for v in values]``."""
  return [{key: v} for v in values]


def seeds(n: int, key: str = "seed") -> list[dict]:
  """The seed axis: ``config.seed`` = 0 … n−1 (averaged over in the tables)."""
  if n < 1:
    raise ValueError(f"seeds: n must be >= 1, got {n}")
  return axis(key, range(n))


def _merge(dicts, what: str) -> dict:
  out = {}
  for d in dicts:
    both = set(out) & set(d)
    if both:
      raise ValueError(f"{what}: key(s) {sorted(both)} set by two axes")
    out.update(d)
  return out


def product(*axes: list[dict]) -> list[dict]:
  """Every combination of one dict from each axis, merged (the first axis
  varies slowest)."""
  return [_merge(c, "product") for c in itertools.product(*axes)]


def zipped(*axes: list[dict]) -> list[dict]:
  """The i-th dicts of all axes merged (the axes must have one length)."""
  if len({len(a) for a in axes}) > 1:
    raise ValueError(f"zipped: axes of different lengths {[len(a) for a in axes]}")
  return [_merge(c, "zipped") for c in zip(*axes)]


# -- the plan ------------------------------------------------------------------------
@dataclasses.dataclass
class Run:
  """One run of a sweep: its overrides, name, workdir, resolved config and command."""
  name: str
  overrides: dict
  workdir: pathlib.Path
  argv: list[str]
  config: object   # ml_collections.ConfigDict, resolved as the run's main.py will

  @property
  def command(self) -> str:
    """A shell command line that runs this run as is."""
    return f"cd {shlex.quote(str(REPO))} && {shlex.join(self.argv)}"

  def done(self) -> bool:
    steps = self.config.train.num_steps
    return (self.workdir / "eval" / str(steps) / "metrics.json").exists()


def load_sweep_file(path: str | os.PathLike):
  """The sweep file as a module, with ``get_config`` and ``get_sweep`` checked."""
  from facetrack_jax import main as demo
  return demo.load_python_file(path, "--sweep", ("get_config", "get_sweep"))


def check_entries(entries, where: str) -> list[dict]:
  """The sweep's override dicts, each key a dotted config path and each value
  a scalar or a tuple of scalars; no two alike."""
  if not isinstance(entries, (list, tuple)) or not entries:
    raise SystemExit(f"error: {where}: get_sweep() must return a non-empty list of dicts, "
                     f"got {type(entries).__name__}")
  seen = {}
  for i, e in enumerate(entries):
    if not isinstance(e, dict):
      raise SystemExit(f"error: {where}: entry {i} is a {type(e).__name__}, not a dict")
    for k, v in e.items():
      if not isinstance(k, str) or not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", k):
        raise SystemExit(f"error: {where}: entry {i}: key {k!r} is not a dotted config path")
      ok = isinstance(v, _SCALARS) or (isinstance(v, tuple) and all(
          isinstance(x, _SCALARS) for x in v))
      if not ok:
        raise SystemExit(f"error: {where}: entry {i}: {k}={v!r} — values must be "
                         "bool, int, float, str or a tuple of those")
    key = json.dumps(e, sort_keys=True)
    if key in seen:
      raise SystemExit(f"error: {where}: entries {seen[key]} and {i} are the same run {e}")
    seen[key] = i
  return list(entries)


def _value_text(v) -> str:
  if isinstance(v, tuple):
    return "(" + ", ".join(_value_text(x) for x in v) + ("," if len(v) == 1 else "") + ")"
  if isinstance(v, float):
    return repr(v)
  return str(v)


def run_names(entries: list[dict]) -> list[str]:
  """``short_key=value`` joined by ``,``; short_key is the key's last part,
  or the whole key where two keys of the sweep end alike. ``base`` for {}."""
  keys = list(dict.fromkeys(k for e in entries for k in e))
  leaf_of = {}
  for k in keys:
    leaf_of.setdefault(k.rsplit(".", 1)[-1], []).append(k)
  short = {k: (k.rsplit(".", 1)[-1] if len(leaf_of[k.rsplit(".", 1)[-1]]) == 1 else k)
           for k in keys}

  def text(v):
    return "_".join(map(str, v)) if isinstance(v, tuple) else _value_text(v)
  names = []
  for e in entries:
    parts = [f"{short[k]}={text(v)}" for k, v in e.items()]
    names.append(re.sub(r"[^\w.,=+-]", "_", ",".join(parts)) or "base")
  return names


def override_flags(overrides: dict) -> list[str]:
  """``--config.key=value`` flags as ml_collections' config_flags parse them."""
  return [f"--config.{k}={_value_text(v)}" for k, v in overrides.items()]


def plan(sweep_file, workdir, data_dir, size_name: str, cli_overrides: list[str]):
  """``(module, [Run])``: every run of the sweep file, its config resolved the
  way its ``main.py`` will (bad overrides fail here, naming the run)."""
  from facetrack_jax import main as demo
  sweep_file = pathlib.Path(sweep_file).absolute()
  mod = load_sweep_file(sweep_file)
  entries = check_entries(mod.get_sweep(), str(sweep_file))
  workdir, data_dir = pathlib.Path(workdir).absolute(), pathlib.Path(data_dir).absolute()
  names = run_names(entries)
  twins = sorted({n for n in names if names.count(n) > 1})
  if twins:
    raise SystemExit(f"error: {sweep_file}: several runs would be named {twins} (values that "
                     "differ only in characters a folder name cannot hold)")
  runs = []
  for name, e in zip(names, entries):
    flags = list(cli_overrides) + override_flags(e)
    try:
      config = demo.load_config(size_name, flags, data_dir, sweep_file)
    except SystemExit as err:
      raise SystemExit(f"error: {sweep_file}: run {name}: {err}") from None
    wd = workdir / name
    argv = [sys.executable, "-m", "facetrack_jax.main", f"--config={sweep_file}",
            f"--size={size_name}", f"--workdir={wd}", f"--data-dir={data_dir}", *flags]
    runs.append(Run(name=name, overrides=e, workdir=wd, argv=argv, config=config))
  return mod, runs


def prepare(runs: list[Run], data_dir, size_name: str) -> None:
  """Builds the synthetic data sets and tokenizers the runs need, each once."""
  from facetrack_jax import main as demo
  size = demo.SIZES[size_name]
  data_dir = pathlib.Path(data_dir).absolute()
  done = set()
  for r in runs:
    if r.config.data.name in done:
      continue
    done.add(r.config.data.name)
    print(f"[data] {r.config.data.name}", flush=True)
    demo.stage_data(data_dir, size, r.config.model, min(4, os.cpu_count() or 1))
    demo.stage_tokenizer(r.config.data, pathlib.Path(r.config.data.tokenizer),
                         size.vocab_size)


# -- the command -----------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  cli_overrides = [a for a in argv if re.match(r"^--?config\.", a)]
  p = argparse.ArgumentParser(prog="python -m facetrack_jax.sweep",
                              description=__doc__.split("\n\n")[0])
  p.add_argument("--sweep", required=True, help="sweep file (get_config, get_sweep)")
  p.add_argument("--workdir", required=True, help="the sweep's folder: one workdir per run")
  p.add_argument("--data-dir", default="data", help="where data sets and tokenizers go")
  p.add_argument("--size", default=os.environ.get("FACETRACK_DEMO_SIZE", "full"),
                 help="demo size (full | ci; env FACETRACK_DEMO_SIZE)")
  p.add_argument("--parallel", type=int, default=1, help="runs at a time, cores shared")
  p.add_argument("--only", nargs="+", metavar="NAME", help="run only these (by name)")
  mode = p.add_mutually_exclusive_group()
  mode.add_argument("--print-commands", action="store_true",
                    help="print one JSON line per run (name, workdir, command) and exit")
  mode.add_argument("--prepare-only", action="store_true",
                    help="build the runs' data sets and tokenizers, then exit")
  mode.add_argument("--report-only", action="store_true",
                    help="gather the finished runs' results; run nothing")
  p.add_argument("--merge", nargs="+", default=(), metavar="SWEEP_JSON",
                 help="earlier sweep.json files of this sweep (another machine's or "
                      "session's): their finished runs stand in for runs not finished here")
  args = p.parse_args([a for a in argv if a not in cli_overrides])
  if args.parallel < 1:
    p.error(f"--parallel must be >= 1, got {args.parallel}")
  if args.merge:   # fail before any run, not after them
    from facetrack_jax import sweep_report
    try:
      sweep_report.merge_records([], args.merge)
    except (OSError, ValueError) as e:
      p.error(str(e) if isinstance(e, ValueError) else f"--merge: {e}")
  workdir = pathlib.Path(args.workdir).absolute()
  mod, runs = plan(args.sweep, workdir, args.data_dir, args.size, cli_overrides)
  selected = runs
  if args.only:
    names = {r.name for r in runs}
    unknown = [n for n in args.only if n not in names]
    if unknown:
      p.error(f"--only: no run named {unknown} in {args.sweep}; its runs: "
              + " ".join(r.name for r in runs))
    selected = [r for r in runs if r.name in args.only]
  if args.print_commands:
    for r in selected:
      print(json.dumps({"name": r.name, "workdir": str(r.workdir), "command": r.command,
                        "argv": r.argv}))
    return 0
  pending = []
  if not args.report_only:
    prepare(selected, args.data_dir, args.size)
    if args.prepare_only:
      return 0
    pending = [r for r in selected if not r.done()]
    for r in selected:
      if r.done():
        print(f"[skip] {r.name}: finished ({r.workdir})")
  from facetrack_jax import sweep_local, sweep_report
  outcome = sweep_local.execute(pending, args.parallel, sweep_local.child_env(workdir)) \
      if pending else {}
  sweep_report.write_all(workdir, runs, sweep_file=pathlib.Path(args.sweep).absolute(),
                         metric=getattr(mod, "METRIC", "tem"),
                         command="python -m facetrack_jax.sweep " + shlex.join(argv),
                         merge_files=args.merge)
  if any(v == "stopped" for v in outcome.values()):
    print("stopped: run the same command again to continue")
    return 130
  return 1 if any(v == "failed" for v in outcome.values()) else 0


if __name__ == "__main__":
  sys.exit(main())
