r"""The one-command demo: synthetic data -> TFDS -> tokenizer -> train -> evaluate -> report.

    python -m facetrack_jax.main [--workdir runs/demo] [--data-dir data] \
        [--size full|ci] [--config FILE] [--config.train.num_steps=500 ...]

On a fresh machine, in order (each stage is skipped when its output exists,
so a second run resumes where the first stopped):

1. data: generates the synthetic face-video set (train + held-out test clips)
   and builds the ``facetrack/synthetic_*`` TFDS dataset through the real
   decode / detect / track / crop path (``data_prep.builder``);
2. tokenizer: a BPE SentencePiece model trained on the training captions;
3. train: ``configs/tiny_synthetic.py`` with the size's settings (resumes
   from the latest checkpoint in ``<workdir>/checkpoints``; a SIGTERM saves
   and stops the command there, exit 0 — run it again to continue);
4. evaluate: greedy captions of the held-out clips, CIDEr / ROUGE-L / AutoDQ /
   TEM (``facetrack_jax.evaluate``; ``<workdir>/eval/<step>/``);
5. report: ``<workdir>/report.md`` with the metrics, generated captions beside
   references, ``<workdir>/loss.png`` and the data-prep summary
   (track-selection accuracy against the generator's ground truth).

``--size ci`` (or ``FACETRACK_DEMO_SIZE=ci``) runs a reduced version (a few
clips of 4 small frames, a tiny model, a few steps) in a couple of minutes:
it proves the pipeline, not the model. ``--config.*`` flags override the
training config after the size's settings. ``--config FILE`` takes the whole
training config from FILE's ``get_config(size)`` instead (a sweep file,
``configs/sweeps/``, whose ``get_config`` starts from :func:`demo_config`).
The synthetic set is built at the config's ``model.{num_frames, frame_size,
face_size}``, so ``--config.model.face_size=48`` gets 48-px crops.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import re
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
CONFIG_FILE = REPO / "configs" / "tiny_synthetic.py"


@dataclasses.dataclass(frozen=True)
class Size:
  """One demo size: the data set to build, the tokenizer and config overrides
  (the clips' frame count and sizes follow ``config.model``)."""
  num_train: int
  num_test: int
  vocab_size: int                  # tokenizer pieces (= model.lm.vocab_size)
  overrides: dict = dataclasses.field(default_factory=dict)   # dotted config keys


# Full size: the DESIGN-NOTES calibration model (2-layer ViTs, the global one of width 96,
# 3-layer LM of width 128, batch 32, AdamW 1e-3), sized to ~20 min on 2 cores.
_FULL_MODEL = {
    "model.vit.width": 96, "model.vit.num_heads": 3, "model.vit.mlp_dim": 192,
    # The face ViT is twice as wide as the global one: at width 96 appearance and
    # events traded off in it (benchmarks/reading_the_face.md, configs/sweeps/face_capacity.py).
    "model.face_vit.width": 192, "model.face_vit.num_heads": 6, "model.face_vit.mlp_dim": 384,
    "model.lm.width": 128, "model.lm.depth": 3, "model.lm.num_heads": 4,
    "model.lm.num_kv_heads": 2, "model.lm.head_dim": 32, "model.lm.mlp_dim": 256,
    "model.lm.vocab_size": 768,
    # The towers start from scratch: the captions' events also train them
    # directly (facetrack_jax/event_supervision.py, README "Training"), the
    # face tower mostly through its own event and appearance heads, with a
    # tenth of the caption loss's gradient (face_event_supervision.py,
    # face_attribute_supervision.py, benchmarks/reading_the_face.md).
    # The token event loss at weight 3 (configs/sweeps/event_weight_wide.py).
    "model.event_head": True, "train.event_loss_weight": 3.0,
    "model.face_event_head": True, "train.face_event_loss_weight": 1.0,
    "model.face_attribute_head": True, "train.face_attribute_loss_weight": 0.03,
    "model.face_tower_grad": 0.1,
}
SIZES = {
    "full": Size(num_train=1200, num_test=120, vocab_size=768, overrides={
        **_FULL_MODEL, "data.max_len": 200, "data.batch_size": 32,
        "train.num_steps": 1000, "train.learning_rate": 1e-3, "train.warmup_steps": 50,
        "train.checkpoint_every": 100, "train.log_every": 5, "train.eval_every": 200}),
    "ci": Size(num_train=24, num_test=6, vocab_size=384, overrides={
                   "model.num_frames": 4, "model.frame_size": 32, "model.face_size": 16,
                   "model.vit.image_size": 32, "model.face_vit.image_size": 16,
                   "model.lm.vocab_size": 384, "data.max_len": 160, "data.batch_size": 8,
                   "model.event_head": True, "train.event_loss_weight": 1.0,
                   "model.face_event_head": True, "train.face_event_loss_weight": 1.0,
                   "model.face_attribute_head": True,
                   "train.face_attribute_loss_weight": 0.03, "model.face_tower_grad": 0.1,
                   "data.num_threads": 1, "data.paraphrase_instructions": False,
                   "train.num_steps": 12, "train.warmup_steps": 2,
                   "train.learning_rate": 3e-3, "train.checkpoint_every": 6,
                   "train.eval_every": 6,
                   "eval.max_new_tokens": 48}),
}


# -- config ----------------------------------------------------------------------------
def _set(config, dotted: str, value) -> None:
  *parents, leaf = dotted.split(".")
  node = config
  for p in parents:
    if p not in node:
      import ml_collections
      node[p] = ml_collections.ConfigDict()
    node = node[p]
  node[leaf] = value


def _size(size_name: str) -> Size:
  if size_name not in SIZES:
    raise SystemExit(f"error: --size must be one of {sorted(SIZES)}, got {size_name!r}")
  return SIZES[size_name]


def demo_config(size_name: str):
  """The demo's training config of a size: ``configs/tiny_synthetic.py`` plus
  the size's settings (data paths still unset)."""
  config = config_from_file(CONFIG_FILE, size_name)
  for key, value in _size(size_name).overrides.items():
    _set(config, key, value)
  return config


def load_python_file(path: str | os.PathLike, flag: str, functions: tuple[str, ...]):
  """A config or sweep file as a module; a clear error naming ``flag`` if the
  file is missing or defines one of ``functions`` not."""
  import importlib.util
  path = pathlib.Path(path)
  if not path.is_file():
    raise SystemExit(f"error: {flag} {path}: no such file")
  spec = importlib.util.spec_from_file_location(f"{flag.strip('-')}_{path.stem}", path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  for fn in functions:
    if not callable(getattr(mod, fn, None)):
      raise SystemExit(f"error: {flag} {path}: the file defines no {fn}()")
  return mod


def config_from_file(path: str | os.PathLike, size_name: str):
  """``get_config(size_name)`` of a config file (``get_config()`` if it takes
  no argument)."""
  import inspect
  get = load_python_file(path, "--config", ("get_config",)).get_config
  return get(size_name) if inspect.signature(get).parameters else get()


def load_config(size_name: str, cli_overrides: list[str], data_dir: str | os.PathLike,
                config_file: str | os.PathLike | None = None):
  """The training config of one demo run: :func:`demo_config` (or
  ``config_file``'s), the user's ``--config.x=y`` flags, then the data paths
  of the synthetic set those settings need (unless the flags set them)."""
  from absl import flags
  from ml_collections import config_flags
  size = _size(size_name)
  base = demo_config(size_name) if config_file is None else config_from_file(
      config_file, size_name)
  argv = ["main", *cli_overrides]
  fv = flags.FlagValues()
  try:   # an unknown key fails when the flag is defined, a bad value when parsed
    config_flags.DEFINE_config_dict("config", base, "training config", flag_values=fv,
                                    lock_config=False, sys_argv=argv)
    fv(argv)
  except (flags.Error, AttributeError, KeyError, ValueError, TypeError) as e:
    raise SystemExit(f"error: bad --config override: {e}") from None
  config = fv.config.copy_and_resolve_references()   # references (sweep files) -> values
  user = set(config_flags.get_override_values(fv["config"]))
  data = data_paths(pathlib.Path(data_dir).absolute(), size, config.model)
  for key, value in {"data.name": data["name"], "data.data_dir": data["data_dir"],
                     "data.tokenizer": data["tokenizer"]}.items():
    if key not in user:
      _set(config, key, value)
  return config


# -- stages ----------------------------------------------------------------------------
def dataset_config(size: Size, model_cfg):
  """The ``facetrack`` TFDS builder config of this size's synthetic set, at
  the model's frame count and image sizes."""
  from data_prep import builder as builder_lib
  return builder_lib.make_config("synthetic", num_train=size.num_train,
                                 num_test=size.num_test, num_frames=model_cfg.num_frames,
                                 frame_size=model_cfg.frame_size, face_size=model_cfg.face_size)


def data_paths(data_dir: pathlib.Path, size: Size, model_cfg) -> dict:
  """TFDS name, data_dir and tokenizer path of this size's data."""
  name = dataset_config(size, model_cfg).name
  return {"name": f"facetrack/{name}", "data_dir": str(data_dir / "tfds"),
          "tokenizer": str(data_dir / f"tokenizer_{name}_bpe{size.vocab_size}.model")}


def stage_data(data_dir: pathlib.Path, size: Size, model_cfg, workers: int) -> dict:
  """Builds (or finds) the synthetic TFDS set; returns its build summary."""
  import tensorflow_datasets as tfds
  from data_prep import builder as builder_lib
  cfg = dataset_config(size, model_cfg)
  b = builder_lib.Facetrack(config=cfg, data_dir=str(data_dir / "tfds"), workers=workers)
  summary_file = pathlib.Path(b.data_path) / builder_lib.SUMMARY_FILE
  if (pathlib.Path(b.data_path) / "dataset_info.json").exists():
    print(f"  facetrack/{cfg.name} already built at {b.data_path}")
  else:
    tfds.disable_progress_bar()  # the builder's own bars count clips
    b.download_and_prepare(file_format="array_record")
  return json.loads(summary_file.read_text()) if summary_file.exists() else {}


def train_tokenizer_file(captions: list[str], vocab_size: int, out: pathlib.Path):
  """A BPE tokenizer of ``vocab_size`` pieces, or of the most SentencePiece
  can make from these captions if that is fewer (tiny caption sets)."""
  from facetrack_jax.tokenizer import train_tokenizer
  try:
    return train_tokenizer(captions, vocab_size, out, model_type="bpe")
  except ValueError as e:
    m = re.search(r"value <= (\d+)", str(e))
    if not m:
      raise
    return train_tokenizer(captions, int(m.group(1)), out, model_type="bpe")


def stage_tokenizer(data_cfg, path: pathlib.Path, vocab_size: int) -> None:
  if path.exists():
    print(f"  tokenizer {path} exists")
    return
  from facetrack_jax import input_pipeline
  src = input_pipeline.open_source(data_cfg, "train")
  captions = []
  for i in range(len(src)):
    c = src[i]["caption"]
    captions.append(c.decode("utf-8") if isinstance(c, bytes) else str(c))
  tok = train_tokenizer_file(captions, vocab_size, path)
  print(f"  trained {tok} on {len(captions)} training captions")


def check_workdir(workdir: pathlib.Path, config) -> None:
  """A workdir holds one model: refuse to resume a run of another model config."""
  saved = workdir / "demo_model_config.json"
  current = json.loads(config.model.to_json())
  if saved.exists():
    if json.loads(saved.read_text()) != current:
      raise SystemExit(f"error: {workdir} holds a run of a different model config "
                       f"({saved}); pass another --workdir or delete that one")
  else:
    workdir.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(current, indent=1) + "\n")


def stage_train(config, workdir: pathlib.Path) -> dict:
  from facetrack_jax import evaluate, train
  step = evaluate.latest_step(workdir)
  if step is not None and step >= config.train.num_steps:
    print(f"  already trained: checkpoint step {step} in {workdir / 'checkpoints'}")
    return {"step": step, "loss": _last_loss(workdir), "preempted": False}
  if step is not None:
    print(f"  resuming from step {step}")
  return train.train(config, str(workdir))


def _last_loss(workdir: pathlib.Path):
  from facetrack_jax.logging_utils import read_metrics
  recs = read_metrics(workdir / "metrics.jsonl")
  return recs[-1]["loss"] if recs else None


def stage_eval(config, workdir: pathlib.Path) -> dict:
  from facetrack_jax import evaluate
  step = evaluate.latest_step(workdir)
  done = workdir / "eval" / str(step) / "metrics.json"
  if done.exists():
    print(f"  step {step} already evaluated: {done}")
    return json.loads(done.read_text())
  return evaluate.evaluate(config, str(workdir), split="test")


# -- the command -----------------------------------------------------------------------------
def run(workdir: str | os.PathLike, data_dir: str | os.PathLike, size_name: str = "full",
        cli_overrides: list[str] = (), workers: int | None = None,
        config_file: str | os.PathLike | None = None) -> dict:
  """Runs every stage; returns ``{"metrics", "report", "stages"}`` (only
  ``{"preempted": True, "step"}`` when a SIGTERM stopped the training)."""
  from absl import logging
  logging.set_verbosity(logging.WARNING)   # orbax / tfds INFO lines would bury the bars
  size = _size(size_name)
  workdir, data_dir = pathlib.Path(workdir).absolute(), pathlib.Path(data_dir).absolute()
  workers = workers or min(4, os.cpu_count() or 1)
  stages: dict[str, float] = {}
  t_all = time.perf_counter()

  def begin(i: int, what: str) -> float:
    print(f"[{i}/5] {what}", flush=True)
    return time.perf_counter()

  # Bad overrides fail here, early.
  config = load_config(size_name, list(cli_overrides), data_dir, config_file)
  check_workdir(workdir, config)
  t = begin(1, f"data: synthetic clips ({size.num_train} train + {size.num_test} test) -> "
               f"{config.data.name}")
  build_summary = stage_data(data_dir, size, config.model, workers)
  stages["data (generate + build)"] = time.perf_counter() - t

  t = begin(2, "tokenizer")
  stage_tokenizer(config.data, pathlib.Path(config.data.tokenizer), size.vocab_size)
  stages["tokenizer"] = time.perf_counter() - t

  (workdir / "config.json").write_text(config.to_json(indent=1) + "\n")
  t = begin(3, f"train: {config.train.num_steps} steps of batch {config.data.batch_size} "
               f"-> {workdir / 'checkpoints'}")
  train_out = stage_train(config, workdir)
  stages["train"] = time.perf_counter() - t
  if train_out.get("preempted"):
    print(f"SIGTERM: stopped at step {train_out['step']} (checkpoint saved); run the same "
          "command again to resume", flush=True)
    return {"preempted": True, "step": train_out["step"]}

  t = begin(4, "evaluate on the held-out test clips")
  metrics = stage_eval(config, workdir)
  stages["evaluate"] = time.perf_counter() - t

  t = begin(5, "report")
  report_path = write_report(workdir, metrics, build_summary, train_out, stages, config,
                             size_name)
  stages["report"] = time.perf_counter() - t
  stages["total"] = time.perf_counter() - t_all
  (workdir / "stages.json").write_text(json.dumps(stages, indent=1) + "\n")
  return {"metrics": metrics, "report": str(report_path), "stages": stages}


def write_report(workdir: pathlib.Path, metrics: dict, build_summary: dict, train_out: dict,
                 stages: dict, config, size_name: str) -> pathlib.Path:
  from facetrack_jax import report
  from facetrack_jax.logging_utils import read_metrics
  from facetrack_jax.metrics.score import format_table
  png = None
  recs = read_metrics(workdir / "metrics.jsonl")
  if len(recs) >= 2:
    png = report.plot_curve(recs, workdir / "loss.png").name
  examples = report.read_examples(workdir / "eval" / str(metrics["step"]), n=6)
  settings = {"size": size_name, "dataset": config.data.name,
              "model": f"ViT {config.model.vit.width}x{config.model.vit.depth}, "
                       f"LM {config.model.lm.width}x{config.model.lm.depth}, face tokens "
                       f"{config.model.compressor.face_tokens}/frame",
              "steps x batch": f"{config.train.num_steps} x {config.data.batch_size}",
              "workdir": str(workdir)}
  text = report.demo_report(metrics=metrics, examples=examples, stages=stages,
                            build_summary=build_summary, train_out=train_out, loss_png=png,
                            settings=settings)
  path = workdir / "report.md"
  path.write_text(text)
  print(format_table(metrics))
  for e in examples[:3]:
    print(f"\n{e['id']}\n  reference: {e['reference']}\n  generated: {e['caption']}")
  print(f"\nreport: {path}" + (f"\nloss curve: {workdir / png}" if png else ""))
  return path


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  cli_overrides = [a for a in argv if re.match(r"^--?config\.", a)]
  rest = [a for a in argv if a not in cli_overrides]
  p = argparse.ArgumentParser(prog="python -m facetrack_jax.main",
                              description=__doc__.split("\n\n")[0],
                              epilog="Any --config.a.b=value flag overrides the training config.")
  p.add_argument("--workdir", default=None,
                 help="run directory (default runs/demo; runs/demo-ci for --size ci)")
  p.add_argument("--data-dir", default="data", help="where the data set and tokenizer go")
  p.add_argument("--size", default=os.environ.get("FACETRACK_DEMO_SIZE", "full"),
                 choices=sorted(SIZES), help="full (default) or ci (env FACETRACK_DEMO_SIZE)")
  p.add_argument("--workers", type=int, default=None, help="data-prep processes")
  p.add_argument("--config", default=None, metavar="FILE",
                 help="training config file with get_config(size) (default: the demo's, "
                      "configs/tiny_synthetic.py with the size's settings)")
  args = p.parse_args(rest)
  workdir = args.workdir or ("runs/demo" if args.size == "full" else f"runs/demo-{args.size}")
  run(workdir, args.data_dir, args.size, cli_overrides, args.workers, args.config)
  return 0


if __name__ == "__main__":
  from facetrack_jax import host_memory
  # glibc's default malloc: one heap would serialize the input pipeline's threads
  # and XLA's (host_memory module doc); FACETRACK_HOST_MALLOC=retain opts in.
  host_memory.retain_freed_memory(by_default=False)
  sys.exit(main())
