"""The attention paths on CPU (issue 24): compiled memory and timings, einsum vs fused.

    python -m benchmarks.attention_cpu --memory [--batch 1] [--out PATH]   # PATH.json, PATH.md
    python -m benchmarks.attention_cpu --timing [--repeats 5] [--out PATH]

``--memory``: the trainer's own step (``train_step.jit_train_step``) at the
paper's widths with reduced depth (SigLIP-so400m tower at 384/224 px, Qwen2-7B
layer shapes; LM depth 4, ViT depth 8; bf16 compute, fp32 params; 1,761 tokens
per example), compiled ahead of time for one CPU device from abstract shapes
(nothing is allocated; :func:`facetrack_jax.dryrun.train_report`, linear
layers as plain ``dot_general``), for each attention path × remat policy (and
the LM head over every position, issue 24 part 2's "before"); XLA's
``memory_analysis()`` temporaries per example. XLA:CPU, not a GPU compile:
on CPU ``dot_product`` is XLA's own implementation (cuDNN's flash kernel
exists only on GPU), so the attention rows measure that the fused path costs
no memory here, not what cuDNN saves.

``--timing``: the ``small`` config (fp32) on this CPU: the train step
(batch 8), prefill (``generate`` with one new token) and decode per token
(``(t(1 + N tokens) - t(1 token)) / N``) at batch 1 and 8, einsum vs
``dot_product`` timed alternately (``a, b, a, b, …``), medians and spreads.

Writes ``<out>.json`` (every number, the command) and ``<out>.md`` (default
``benchmarks/results/attention_cpu_<memory|timing>``).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

PATHS = ("einsum", "dot_product")
ROOT = pathlib.Path(__file__).resolve().parents[1]


def paper_reduced_config(depth_lm: int = 4, depth_vit: int = 8):
  """configs/paper.py with LM depth 4, ViT depth 8 and 1,761-token examples (issue 24)."""
  from configs import paper
  config = paper.get_config()
  config.model.lm.depth = depth_lm
  config.model.vit.depth = config.model.face_vit.depth = depth_vit
  config.mesh.shape = (1, 1, 1)
  config.data.max_len = 1 + 8 * (196 + 16) + 64
  return config


def memory(batch: int = 1) -> dict:
  import jax
  from facetrack_jax import dryrun, sharding
  rows = []
  variants = [(a, r, "loss") for r in ("none", "full") for a in PATHS]
  variants += [("einsum", "full", "all"), ("einsum", "none", "all")]   # before issue 24 part 2
  for attention, remat, logits_at in variants:
    config = paper_reduced_config()
    config.model.attention, config.model.remat = attention, remat
    config.train.logits_at = logits_at
    mesh = sharding.make_mesh((1, 1, 1), devices=jax.devices()[:1])
    t0 = time.perf_counter()
    rep = dryrun.train_report(config, mesh, batch)
    mem = rep["memory"]
    rows.append(dict(attention=attention, remat=remat, logits_at=logits_at, batch=batch,
                     seq_len=config.data.max_len, num_params=rep["num_params"],
                     temporaries=mem["temporaries"],
                     temporaries_per_example=mem["temporaries"] / batch,
                     arguments=mem["arguments"], peak_estimate=mem["peak_estimate"],
                     compile_s=rep["compile_s"], lower_s=rep["lower_s"],
                     wall_s=time.perf_counter() - t0))
    print(f"[memory] {attention:11s} remat={remat:4s} logits_at={logits_at:4s}: temporaries "
          f"{mem['temporaries'] / 2**30:.2f} GiB ({rep['compile_s']:.0f} s compile)",
          file=sys.stderr, flush=True)
  return dict(kind="memory", rows=rows)


def timing(repeats: int = 5, new_tokens: int = 16, prompt_len: int = 128,
           train: bool = True) -> dict:
  import jax
  import jax.numpy as jnp
  from flax import nnx
  from benchmarks import bench_train, common
  from facetrack_jax import sharding
  from facetrack_jax.generate import generate
  from facetrack_jax.models.lm import LM
  out = dict(kind="timing", device=common.device_info(), repeats=repeats)

  # Train step, small config, batch 8.
  steps = {}
  for a in PATHS if train else ():
    config = bench_train.load_config("small")
    config.model.attention = a
    config.mesh.shape = (1, 1, 1)
    steps[a] = bench_train.build_step(config, common.random_batch(config.model, 8, 64))
    common.jax_sync(steps[a].step())
  if train:
    out["train_step_batch8"] = _alternate({a: steps[a].step for a in PATHS}, repeats)
  del steps

  # Prefill and decode: the small config's LM (fp32), random weights.
  cfg = bench_train.load_config("small").model.lm
  with sharding.use_mesh():
    lms = {a: LM(cfg, rngs=nnx.Rngs(0), attention=a) for a in PATHS}
  for b in (1, 8):
    x = jax.random.normal(jax.random.key(0), (b, prompt_len, cfg.width))
    mask = jnp.ones((b, prompt_len), bool)
    fns = {}
    for a in PATHS:
      for n in (1, 1 + new_tokens):
        f = (lambda lm, n: lambda: generate(lm, x, mask, max_new_tokens=n, eos_id=-1))(lms[a], n)
        common.jax_sync(f())
        fns[(a, n)] = f
    pre = _alternate({a: fns[(a, 1)] for a in PATHS}, repeats)
    full = _alternate({a: fns[(a, 1 + new_tokens)] for a in PATHS}, repeats)
    out[f"prefill_batch{b}"] = pre
    out[f"decode_per_token_batch{b}"] = {
        a: dict(median_s=(full[a]["median_s"] - pre[a]["median_s"]) / new_tokens,
                generate_median_s=full[a]["median_s"]) for a in PATHS}
  out.update(prompt_len=prompt_len, new_tokens=new_tokens)
  return out


def _alternate(fns: dict, repeats: int) -> dict:
  """Times each callable ``repeats`` times, alternating between them."""
  import statistics
  from benchmarks import common
  samples = {k: [] for k in fns}
  for _ in range(repeats):
    for k, f in fns.items():
      samples[k] += common.time_calls(f, warmup=0, repeats=1).samples
  return {k: dict(median_s=statistics.median(v), min_s=min(v), max_s=max(v), samples=v)
          for k, v in samples.items()}


def markdown(report: dict) -> str:
  lines = [f"# Attention paths on CPU ({report['kind']})", "", f"Command: `{report['command']}`",
           f"Date (UTC): {report['date']}", ""]
  if report["kind"] == "memory":
    r0 = report["rows"][0]
    lines += [f"Train step at the paper's widths, LM depth 4, ViT depth 8 "
              f"({r0['num_params'] / 1e9:.2f} B params), bf16 compute, fp32 params, "
              f"batch {r0['batch']} × {r0['seq_len']} tokens, "
              "compiled by XLA:CPU for one device from abstract shapes; `memory_analysis()` "
              "temporaries (GiB per example).", "",
              "| attention | remat | logits_at | temporaries / example | compile s |",
              "|---|---|---|---|---|"]
    for r in report["rows"]:
      lines.append(f"| {r['attention']} | {r['remat']} | {r['logits_at']} | "
                   f"{r['temporaries_per_example'] / 2**30:.2f} | {r['compile_s']:.0f} |")
  else:
    lines += ["`small` config, fp32, medians of alternating runs (min–max) in ms.", "",
              "| item | einsum | dot_product (XLA) | dot_product ÷ einsum |", "|---|---|---|---|"]
    for key, val in report.items():
      if not isinstance(val, dict) or "einsum" not in val:
        continue
      e, d = val["einsum"], val["dot_product"]
      rng = lambda x: (f" ({x['min_s'] * 1e3:.1f}–{x['max_s'] * 1e3:.1f})"
                       if "min_s" in x else "")
      lines.append(f"| {key} | {e['median_s'] * 1e3:.1f}{rng(e)} | "
                   f"{d['median_s'] * 1e3:.1f}{rng(d)} | {d['median_s'] / e['median_s']:.3f} |")
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  g = p.add_mutually_exclusive_group(required=True)
  g.add_argument("--memory", action="store_true")
  g.add_argument("--timing", action="store_true")
  p.add_argument("--batch", type=int, default=1, help="--memory: examples per step")
  p.add_argument("--repeats", type=int, default=5, help="--timing: alternating runs per item")
  p.add_argument("--new-tokens", type=int, default=16, help="--timing: decode steps timed")
  p.add_argument("--no-train", action="store_true", help="--timing: prefill and decode only")
  p.add_argument("--out", help="output path without extension")
  args = p.parse_args(argv)
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  report = (memory(args.batch) if args.memory else
            timing(args.repeats, args.new_tokens, train=not args.no_train))
  report["command"] = "python -m benchmarks.attention_cpu " + " ".join(
      sys.argv[1:] if argv is None else argv)
  report["date"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
  out = pathlib.Path(args.out or ROOT / "benchmarks" / "results" /
                     f"attention_cpu_{report['kind']}")
  out.parent.mkdir(parents=True, exist_ok=True)
  out.with_suffix(".json").write_text(json.dumps(report, indent=1, default=str))
  out.with_suffix(".md").write_text(markdown(report))
  print(markdown(report))
  return 0


if __name__ == "__main__":
  sys.exit(main())
