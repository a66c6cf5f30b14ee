r"""Evaluation: restore a checkpoint, caption a TFDS split, score, report.

    python -m facetrack_jax.evaluate --config configs/tiny_synthetic.py --workdir W \
        [--split test] [--judge offline] [--step N] [--config.x=y ...]

Restores the params of the latest (or ``--step``) checkpoint in
``W/checkpoints`` onto the config's mesh (abstract, sharded targets: any mesh
can read any checkpoint), captions every clip of the split with batched greedy
decoding (batch sharded over ("data", "fsdp"); the padding rows of the last
batch are dropped), detokenises and scores with
:func:`facetrack_jax.metrics.score.score_captions`. Writes ``W/eval/<step>/``:

* ``predictions.json`` — FEC-Bench format ``[{"id", "caption"}]``, and
  ``references.json`` beside it (``python -m facetrack_jax.metrics.score
  --pred predictions.json --ref references.json`` re-scores them);
* ``metrics.json`` — CIDEr, ROUGE-L, AutoDQ and TEM (fractions), a per-source
  breakdown, the ids the build skipped (``missing_ids``: they have a
  reference but no clip, so no prediction), timings;
* ``per_clip.jsonl`` — events and scores per clip;
* ``per_event.json`` — per event kind: recall, recall in the right phase,
  the rate at which predictions name it, and the lift over that rate
  (≈ 0 = named at chance);
* ``per_attribute.json`` — per appearance attribute (gender, age, hair
  colour / length, skin, glasses, beard): accuracy, the majority-class
  prior, lift = accuracy − prior, how often predictions state it, and the
  accuracy where both captions state it (both from
  :mod:`facetrack_jax.metrics.breakdowns`);
* ``heads.json`` — with training heads (event / attribute loss), what they
  read off the visual tokens of the same clips (:mod:`head_readout`: head
  accuracy or AUC beside the captions' lift);
* ``report.md`` — the tables and a few predictions beside their references.

Multi-host: every process runs the same command and captions its data
shard's share of the split (``sharding.data_shards``: hosts holding replicas
of one batch shard caption the same clips); the predictions are gathered
over the processes' network (``multihost_utils.process_allgather``, no shared
filesystem needed), each shard's count is checked against its share of the
split (a missing row stops the evaluation, naming the process), and process
0 scores and writes.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

import jax
import numpy as np
from absl import app, flags
from flax import nnx
from ml_collections import config_flags
from tqdm import tqdm

from facetrack_jax import checkpoint, paths, prompt, sharding, train_step

# Fields of an eval batch the model reads (the rest stay on the host).
_MODEL_FIELDS = ("frames", "faces", "face_mask", "prompt")


def _text(x) -> str:
  if isinstance(x, np.ndarray) and x.shape == ():
    x = x.item()
  return x.decode("utf-8") if isinstance(x, bytes) else str(x)


# -- model -------------------------------------------------------------------------
def latest_step(workdir: str | os.PathLike) -> int | None:
  """The newest finalised checkpoint step in ``workdir/checkpoints`` (None if none)."""
  import orbax.checkpoint as ocp
  d = paths.resolve(workdir) / "checkpoints"
  return max(ocp.utils.checkpoint_steps(d), default=None) if d.is_dir() else None


def with_weights_dtype(config, weights_dtype: str | None):
  """``config`` with ``model.param_dtype`` and ``model.dtype`` both set to
  ``weights_dtype`` ("bfloat16": weights restored cast to bf16, bf16
  compute and a bf16 KV cache; half the bytes each decoding step reads);
  ``None`` keeps ``config`` as it is."""
  if weights_dtype is None:
    return config
  if weights_dtype not in ("float32", "bfloat16"):
    raise ValueError(f"weights_dtype must be 'float32' or 'bfloat16', got {weights_dtype!r}")
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.model.param_dtype = config.model.dtype = weights_dtype
  return config


def load_model(config, workdir: str | os.PathLike, mesh, step: int | None = None,
               weights_dtype: str | None = None):
  """``(model, step)``: the model of ``config.model`` built abstractly on
  ``mesh`` with the params of checkpoint ``step`` (default: latest) of
  ``workdir/checkpoints`` restored straight onto their shardings, cast to
  ``config.model.param_dtype`` (or ``weights_dtype``: :func:`with_weights_dtype`)."""
  config = with_weights_dtype(config, weights_dtype)
  step = latest_step(workdir) if step is None else step
  ckpt_dir = paths.resolve(workdir) / "checkpoints"
  if step is None:
    raise FileNotFoundError(f"no checkpoint in {ckpt_dir}: train first "
                            "(python -m facetrack_jax.train --workdir ...)")
  setup = train_step.make_setup(config, mesh)
  params = checkpoint.restore_params(ckpt_dir, setup.abstract_state["params"], step)
  rest = train_step.init_rest(config, setup)
  with sharding.use_mesh(mesh):
    model = nnx.merge(setup.graphdef, params, rest)
  return model, int(step)


# -- generation ----------------------------------------------------------------------
def _host_rows(x: jax.Array, mesh) -> np.ndarray:
  """This process's rows of a batch-sharded global array, in host order."""
  if jax.process_count() == 1:
    return np.asarray(jax.device_get(x))
  from jax.experimental import multihost_utils
  spec = sharding.logical_to_spec(("batch",) + (None,) * (x.ndim - 1))
  return np.asarray(multihost_utils.global_array_to_host_local_array(x, mesh, spec))


def default_max_new_tokens(config, prompt_len: int) -> int:
  """``config.eval.max_new_tokens`` if set, else what training could fit:
  ``data.max_len - prompt_len`` (captions longer than that were cut)."""
  ev = config.get("eval") or {}
  n = ev.get("max_new_tokens") or config.data.max_len - prompt_len
  n = min(int(n), config.model.lm.max_len - prompt_len)
  if n < 1:
    raise ValueError(f"no room to generate: prompt of {prompt_len} tokens, "
                     f"data.max_len {config.data.max_len}, lm.max_len {config.model.lm.max_len}")
  return n


def caption_split(model, config, tokenizer, mesh, split: str, *, source=None,
                  max_new_tokens: int | None = None, progress: bool = True) -> list[dict]:
  """Greedy captions of this process's share of ``split``:
  ``[{"id", "caption" (generated), "reference"}]`` in reading order, the
  padding of the last batch dropped."""
  from facetrack_jax import input_pipeline
  from facetrack_jax.generate import left_align
  from facetrack_jax.models.facetrack import generate_captions

  src = input_pipeline.open_source(config.data, split) if source is None else source
  shard = sharding.data_shard(mesh)
  batches = input_pipeline.make_eval_batches(config, tokenizer, split, source=src, shard=shard)
  host_batch = config.data.batch_size // shard.count
  total = math.ceil(math.ceil(len(src) / shard.count) / host_batch)
  end = prompt.end_id(tokenizer, config.data.get("chat_template", "gemma"))  # stops a caption
  out = []
  bar = tqdm(batches, total=total, desc=f"caption {split}", unit="batch",
             disable=not progress or jax.process_index() != 0, dynamic_ncols=True)
  with sharding.use_mesh(mesh):
    for batch_np in bar:
      batch = input_pipeline.to_global({k: batch_np[k] for k in _MODEL_FIELDS}, mesh)
      prompt_bl, mask_bl = left_align(batch["prompt"], batch["prompt"] != tokenizer.pad_id)
      n_new = max_new_tokens or default_max_new_tokens(config, prompt_bl.shape[1])
      tokens_bn = generate_captions(model, batch["frames"], batch["faces"], batch["face_mask"],
                                    prompt_bl, mask_bl, max_new_tokens=n_new,
                                    eos_id=end, pad_id=tokenizer.pad_id)
      tokens_bn = _host_rows(tokens_bn, mesh)
      for row, valid, ex_id, ref in zip(tokens_bn, batch_np["valid"], batch_np["id"],
                                        batch_np["caption"]):
        if valid:
          row = list(row)
          row = row[:row.index(end)] if end in row else row
          out.append({"id": _text(ex_id), "caption": tokenizer.decode(row).strip(),
                      "reference": _text(ref)})
  return out


def read_heads(model, config, tokenizer, mesh, split: str, src) -> dict | None:
  """:func:`facetrack_jax.head_readout.readout` of the model's training heads
  on ``split`` (None without heads, or on more than one process)."""
  from facetrack_jax import caption_supervision, head_readout, input_pipeline
  heads = tuple(h for h in caption_supervision.HEADS
                if getattr(model, f"{h}_head", None) is not None)
  if not heads or jax.process_count() != 1:
    return None
  batches = input_pipeline.make_eval_batches(config, tokenizer, split, source=src,
                                             shard=sharding.data_shard(mesh))
  return head_readout.readout(model, batches, heads, mesh)


def merge_shards(per_process: dict[int, list[dict]], shards: dict[int, sharding.DataShard],
                 num_examples: int, split: str = "?") -> list[dict]:
  """The predictions of every data shard, once: each shard's leader's rows,
  after checking that it holds exactly its share of the split's
  ``num_examples`` (:func:`input_pipeline.eval_shard_size`) and that the
  shard's replica processes produced the same rows.

  Raises ``ValueError`` naming the process whose rows are missing or differ
  (never scores part of a split as if it were all of it)."""
  from facetrack_jax.input_pipeline import eval_shard_size
  if sorted(per_process) != sorted(shards):
    raise ValueError(f"evaluation of split {split!r}: predictions came from processes "
                     f"{sorted(per_process)}, the mesh has processes {sorted(shards)}")
  merged = []
  for p, shard in sorted(shards.items(), key=lambda kv: (kv[1].index, kv[0])):
    rows, want = per_process[p], eval_shard_size(num_examples, shard)
    if len(rows) != want:
      raise ValueError(
          f"evaluation of split {split!r} ({num_examples} examples): process {p} (data "
          f"shard {shard.index} of {shard.count}) returned {len(rows)} predictions, its "
          f"share is {want} — rows are missing; not scoring a partial split")
    leader = shard.processes[0]
    if p != leader and rows != per_process[leader]:
      raise ValueError(f"evaluation of split {split!r}: process {p} holds a replica of "
                       f"data shard {shard.index} but its predictions differ from "
                       f"process {leader}'s")
    if p == leader:
      merged += rows
  ids = [r["id"] for r in merged]
  if len(set(ids)) != len(ids) or len(ids) != num_examples:
    raise ValueError(f"evaluation of split {split!r}: {len(ids)} predictions "
                     f"({len(set(ids))} distinct ids) for {num_examples} examples")
  return merged


def gather_predictions(rows: list[dict], mesh, num_examples: int,
                       split: str = "?") -> list[dict]:
  """Every process's rows (this process's data shard's predictions) on every
  process, via two ``process_allgather``s of fixed-size arrays (byte lengths,
  then the JSON bytes padded to the longest), merged and checked by
  :func:`merge_shards`. No filesystem involved."""
  shards = sharding.data_shards(mesh)
  if jax.process_count() == 1:
    return merge_shards({0: rows}, shards, num_examples, split)
  from jax.experimental import multihost_utils
  blob = np.frombuffer(json.dumps(rows).encode("utf-8"), np.uint8)
  sizes = np.asarray(multihost_utils.process_allgather(np.int32(blob.size)))
  padded = np.zeros((int(sizes.max()),), np.uint8)
  padded[:blob.size] = blob
  blobs = np.asarray(multihost_utils.process_allgather(padded))
  per_process = {p: json.loads(blobs[p, :int(sizes[p])].tobytes().decode("utf-8"))
                 for p in range(jax.process_count())}
  return merge_shards(per_process, shards, num_examples, split)


# -- dataset facts ----------------------------------------------------------------------
def sources_by_id(src) -> dict[str, str]:
  """``{id: source}`` of a TFDS split (``source`` = first path component of
  the video; "unknown" if the records lack it)."""
  out = {}
  for i in range(len(src)):
    r = src[i]
    out[_text(r["id"])] = _text(r["source"]) if "source" in r else "unknown"
  return out


def skipped_ids(src, split: str) -> list[str]:
  """Ids of ``split`` the build skipped (``errors.jsonl`` beside the TFDS
  shards): they have a reference caption but no clip, hence no prediction."""
  info = getattr(src, "dataset_info", None)
  path = paths.resolve(info.data_dir) / "errors.jsonl" if info is not None else None
  if path is None or not path.is_file():
    return []
  recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
  return sorted(str(r["id"]) for r in recs if r.get("split") == split and r.get("id"))


# -- the whole evaluation ---------------------------------------------------------------
def score(rows: list[dict], sources: dict[str, str], judge: str = "offline") -> dict:
  """Metrics of predictions ``rows`` (``[{"id", "caption", "reference"}]``):
  the overall score plus ``per_source`` (each source scored on its own) and
  ``per_clip``."""
  from facetrack_jax.metrics.score import score_captions
  preds = {r["id"]: r["caption"] for r in rows}
  refs = {r["id"]: r["reference"] for r in rows}
  metrics = score_captions(preds, refs, judge, per_clip=True, progress=True)
  groups: dict[str, list[str]] = {}
  for i in preds:
    groups.setdefault(sources.get(i, "unknown"), []).append(i)
  per_source = {}
  for name, ids in sorted(groups.items()):
    if len(groups) == 1:
      m = metrics
    else:
      m = score_captions({i: preds[i] for i in ids}, {i: refs[i] for i in ids}, judge)
    per_source[name] = {k: m[k] for k in ("n", "cider", "rouge_l", "autodq", "tem")}
  metrics["per_source"] = per_source
  return metrics


def evaluate(config, workdir: str | os.PathLike, *, split: str = "test",
             judge: str = "offline", step: int | None = None, source=None,
             num_examples: int = 5, progress: bool = True,
             weights_dtype: str | None = None) -> dict | None:
  """Restores, captions ``split``, scores and writes ``workdir/eval/<step>/``.

  Returns the metrics dict (on process 0; None on the others). ``source``:
  a random-access record source to read instead of the TFDS split;
  ``weights_dtype``: "bfloat16" generates with bf16 weights, compute and KV
  cache (:func:`with_weights_dtype`).
  """
  config = with_weights_dtype(config, weights_dtype)
  from facetrack_jax import report
  from facetrack_jax.metrics.breakdowns import write_breakdowns
  from facetrack_jax import tokenizer as tokenizer_lib
  t0 = time.perf_counter()
  mesh = sharding.mesh_from_config(config.mesh)
  tokenizer = tokenizer_lib.from_config(config.data)
  model, step = load_model(config, workdir, mesh, step)
  from facetrack_jax import input_pipeline
  src = input_pipeline.open_source(config.data, split) if source is None else source
  t1 = time.perf_counter()
  rows = caption_split(model, config, tokenizer, mesh, split, source=src, progress=progress)
  rows = gather_predictions(rows, mesh, len(src), split)
  heads = read_heads(model, config, tokenizer, mesh, split, src)
  t2 = time.perf_counter()
  if jax.process_index() != 0:
    return None
  if not rows:
    raise ValueError(f"split {split!r} yielded no valid example to caption")
  out_dir = paths.resolve(workdir) / "eval" / str(step)
  out_dir.mkdir(parents=True, exist_ok=True)
  sources = sources_by_id(src)
  metrics = score(rows, sources, judge)
  per_clip = metrics.pop("per_clip")
  t3 = time.perf_counter()
  missing = skipped_ids(src, split)
  metrics.update(
      step=step, split=split, dataset=str(config.data.get("name", "")),
      workdir=str(paths.resolve(workdir)),
      missing_ids=missing, num_predictions=len(rows),
      weights_dtype=str(config.model.param_dtype), seconds={"restore": t1 - t0, "generate": t2 - t1, "score": t3 - t2})
  rows = sorted(rows, key=lambda r: r["id"])
  for name, key in (("predictions.json", "caption"), ("references.json", "reference")):
    (out_dir / name).write_text(json.dumps(
        [{"id": r["id"], "caption": r[key]} for r in rows], indent=1) + "\n")
  (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
  (out_dir / "per_clip.jsonl").write_text("".join(
      json.dumps({"id": i, "source": sources.get(i, "unknown"), **clip}) + "\n"
      for i, clip in per_clip.items()))
  breakdowns = write_breakdowns({r["id"]: r["caption"] for r in rows},
                                {r["id"]: r["reference"] for r in rows}, out_dir)
  examples = [dict(r, source=sources.get(r["id"], "unknown")) for r in rows[:num_examples]]
  text = report.eval_report(metrics, examples, breakdowns)
  if heads:
    from facetrack_jax.head_readout import heads_table
    (out_dir / "heads.json").write_text(json.dumps(heads, indent=1) + "\n")
    text += ("\n## What the training heads read (heads.json)\n\n"
             "Head accuracy / AUC: the face tokens carry it; caption lift: the LM says it.\n\n"
             + heads_table(heads, breakdowns))
  (out_dir / "report.md").write_text(text)
  return metrics


# -- CLI ---------------------------------------------------------------------------------
def _define_flags() -> None:
  """CLI flags, defined only when run as a script. ``train`` (imported for
  ``initialize_distributed``) defines ``--config`` and ``--workdir`` at import;
  they are shared, not defined twice."""
  from facetrack_jax import train  # noqa: F401  (defines --config / --workdir)
  if "config" not in flags.FLAGS:
    config_flags.DEFINE_config_file("config", None, "training config file", lock_config=True)
  if "workdir" not in flags.FLAGS:
    flags.DEFINE_string("workdir", None, "run directory holding checkpoints/")
  flags.DEFINE_string("split", "test", "TFDS split to caption")
  flags.DEFINE_string("judge", "offline", "event judge for AutoDQ / TEM")
  flags.DEFINE_integer("step", None, "checkpoint step (default: latest)")
  flags.DEFINE_enum("weights_dtype", None, ["float32", "bfloat16"],
                    "generate with weights, compute and KV cache in this dtype "
                    "(default: config.model.param_dtype / dtype)")
  flags.mark_flags_as_required(["config", "workdir"])


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from facetrack_jax import train
  from facetrack_jax.metrics.score import format_table
  f = flags.FLAGS
  train.initialize_distributed(f.config.get("distributed") or {})
  try:
    metrics = evaluate(f.config, f.workdir, split=f.split, judge=f.judge, step=f.step,
                       weights_dtype=f.weights_dtype)
  except (FileNotFoundError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  if metrics is not None:
    out = paths.resolve(f.workdir) / "eval" / str(metrics["step"])
    if metrics["missing_ids"]:
      print(f"WARNING: {len(metrics['missing_ids'])} clips of split {f.split!r} were "
            f"skipped by the build and have no prediction: {metrics['missing_ids'][:20]}",
            file=sys.stderr)
    print(format_table(metrics))
    print(f"wrote {out}/: predictions.json, references.json, metrics.json, per_clip.jsonl, "
          "per_event.json, per_attribute.json, report.md")


if __name__ == "__main__":
  from facetrack_jax import host_memory
  # glibc's default malloc: one heap would serialize the input pipeline's threads
  # and XLA's (host_memory module doc); FACETRACK_HOST_MALLOC=retain opts in.
  host_memory.retain_freed_memory(by_default=False)
  _define_flags()
  app.run(main)
