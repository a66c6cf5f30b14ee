"""The accelerator check of issues 19 and 24: one command, one GPU, ≤ 8 minutes.

    python -m benchmarks.gpu_check [--quick] [--out benchmarks/results/gpu-<device>.json]
    python -m benchmarks.gpu_check --smoke --out /tmp/smoke.json     # tiny shapes, any CPU, seconds

Measures, in one process (``benchmarks/gpu_check.sh`` runs it on a lent GPU;
the HF side runs first, then ours, then the train grid until the budget ends):

1. **Ceilings**: a bf16 8192³ ``jnp.dot`` (FLOP/s) and a 4 GiB ``jnp.sum``
   (read bytes/s).
2. **Train step** (``train_step.jit_train_step``: forward, loss at the text
   positions, backward, clip, AdamW) at issue 24's shapes: the paper's widths
   (SigLIP-so400m at 384/224 px, Qwen2-7B layers) with LM depth 4 and ViT
   depth 8, bf16 compute, fp32 params, everything trainable, 1,761 tokens per
   example; for each (attention path, remat policy, batch) of :data:`TRAIN_GRID`
   in priority order while the time budget lasts: ms/step, model TFLOP/s
   (:mod:`facetrack_jax.flops`, full L² attention and logits at every position
   counted, as issue 24's 290 TFLOP/s), XLA's temporaries per example
   (``memory_analysis()``) and the process peak from ``device.memory_stats()``
   (peak − state bytes per example, when this run raised the peak). One train
   state serves every variant (same params); a variant that does not fit is
   recorded as such.
3. **Prefill** (``generate`` with one new token; the paper LM, 28 layers, bf16
   weights, 1,728-token prompt) at batch 1 and 8 per attention path, against
   HF transformers' Qwen2 (``attn_implementation="sdpa"``, bf16, random
   weights of the same shapes, ``logits_to_keep=1``) on the same shapes;
   model FLOP/s ÷ the matmul ceiling.
4. **Decode** per token at batch 1, bf16: ``(t(1 + N) − t(1)) / N`` of
   ``generate`` per attention path and of HF ``generate``; the bytes one step
   reads (weights except the input embedding, plus the KV cache) ÷ time ÷ the
   read ceiling.

The report is rewritten after every figure (a timeout still leaves results):
``<out>`` (JSON, every number) and ``<out>`` with ``.md``. ``--smoke`` runs
every part at tiny shapes (fp32 on CPU; what the unit test runs);
``--quick`` trims the grid and repeats. Imports only the train-step and
generate paths (jax, flax, optax, ml_collections; torch + transformers for
the HF side): no grain, TFDS, array-record, av, tensorboardX, pycocoevalcap
or rouge-score, none of which the GPU image has.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import time
import traceback

ROOT = pathlib.Path(__file__).resolve().parents[1]

# (attention, remat, batch), most wanted first: batch 8 with the fused kernel
# (issue 24's target), today's path at batch 2 (the 290 TFLOP/s baseline), then
# the remat policies issue 24 part 3 compares.
TRAIN_GRID = (
    ("dot_product", "full", 8), ("einsum", "full", 2), ("dot_product", "full", 2),
    ("dot_product", "save_dot_except_mlp", 8), ("dot_product", "save_dot_except_mlp", 4),
    ("dot_product", "none", 4), ("dot_product", "full", 4), ("einsum", "none", 2),
    ("einsum", "full", 8), ("dot_product", "none", 8), ("dot_product", "save_out_proj", 8),
)
QUICK_GRID = TRAIN_GRID[:4]
SMOKE_GRID = (("einsum", "full", 2), ("dot_product", "save_dot_except_mlp", 2))
PATHS = ("einsum", "dot_product")


class Check:
  """The run: settings, the report being built, and its files."""

  def __init__(self, args):
    self.args, self.t0 = args, time.perf_counter()
    self.smoke, self.quick = args.smoke, args.quick
    self.budget = args.budget_s
    self.out = pathlib.Path(args.out) if args.out else None
    self.report: dict = dict(command="python -m benchmarks.gpu_check " + " ".join(args.argv),
                             date=time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
                             smoke=self.smoke, quick=self.quick, budget_s=self.budget,
                             train=[], prefill=[], decode=[], skipped=[], errors=[])

  def elapsed(self) -> float:
    return time.perf_counter() - self.t0

  def log(self, msg: str) -> None:
    print(f"[gpu_check {self.elapsed():6.1f}s] {msg}", file=sys.stderr, flush=True)

  def has_time(self, fraction: float, what: str) -> bool:
    """Whether ``what`` may start: elapsed < ``fraction`` of the budget."""
    if self.elapsed() < fraction * self.budget:
      return True
    self.report["skipped"].append(f"{what}: out of time ({self.elapsed():.0f} s of "
                                  f"{self.budget:.0f})")
    self.log(f"skip {what}: out of time")
    return False

  def start(self, section: str, what: str, fraction: float, **row) -> dict | None:
    """A new row of ``section`` if ``what`` may start (:meth:`has_time`), else None."""
    if not self.has_time(fraction, what):
      return None
    self.report[section].append(row)
    return row

  def write(self) -> None:
    self.report["elapsed_s"] = self.elapsed()
    if self.out is None:
      return
    text, md = json.dumps(self.report, indent=1, default=str), markdown(self.report)
    for out in [self.out] + ([pathlib.Path(self.args.copy_to) / self.out.name]
                             if self.args.copy_to else []):
      out.parent.mkdir(parents=True, exist_ok=True)
      out.write_text(text)
      out.with_suffix(".md").write_text(md)

  def error(self, what: str, exc: BaseException) -> dict:
    msg = f"{type(exc).__name__}: {exc}"
    oom = any(s in msg for s in ("RESOURCE_EXHAUSTED", "Out of memory", "out of memory",
                                 "OutOfMemory"))
    self.report["errors"].append(dict(what=what, oom=oom, error=msg[:2000],
                                      traceback=traceback.format_exc()[-3000:]))
    self.log(f"{what}: {'out of memory' if oom else 'error'}: {msg[:300]}")
    return dict(error=msg[:500], oom=oom)


# -- 1. ceilings -------------------------------------------------------------------------
def ceilings(check: Check) -> dict:
  import jax
  import jax.numpy as jnp
  from benchmarks import common
  dtype = jnp.float32 if check.smoke else jnp.bfloat16
  mm = common.peak_matmul(256 if check.smoke else 8192, dtype, repeats=3 if check.smoke else 10)
  nbytes = (16 << 20) if check.smoke else (4 << 30)
  x = jnp.ones((nbytes // 4,), jnp.float32)
  total = jax.jit(jnp.sum)
  t = common.time_calls(lambda: total(x), warmup=2, repeats=3 if check.smoke else 10)
  del x
  return dict(matmul=mm, read=dict(bytes=nbytes, bytes_per_s=nbytes / t.median, **t.to_json()))


# -- 2. train step -----------------------------------------------------------------------
def train_config(check: Check, attention: str, remat: str):
  from benchmarks import bench_train
  if check.smoke:
    config = bench_train.load_config("tiny")
    config.model.lm.depth = config.model.vit.depth = config.model.face_vit.depth = 1
  else:
    config = bench_train.load_config("paper")      # trainable "*", bf16 compute on GPU
    config.model.lm.depth = 4
    config.model.vit.depth = config.model.face_vit.depth = 8
  config.model.param_dtype = "float32"
  config.model.attention, config.model.remat = attention, remat
  config.mesh.shape = (1, 1, 1)
  return config


def _memory_stats() -> dict:
  import jax
  try:
    return dict(jax.devices()[0].memory_stats() or {})
  except Exception:  # CPU: not implemented
    return {}


def _nbytes(tree) -> int:
  import jax
  return int(sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree)))


def train(check: Check) -> None:
  import jax
  from benchmarks import common
  from facetrack_jax import flops, sharding, train_step
  grid = SMOKE_GRID if check.smoke else QUICK_GRID if check.quick else TRAIN_GRID
  text_len = 16 if check.smoke else 64
  repeats = 2 if check.smoke else 3 if check.quick else 5
  mesh = sharding.make_mesh((1, 1, 1), devices=jax.devices()[:1])
  holder: dict = {}

  def fresh_state(config, setup):
    holder.clear()
    holder["state"] = train_step.init_state(config, setup)
    holder["rest"] = setup.rest
    holder["bytes"] = _nbytes(holder["state"])

  for attention, remat, batch in grid:
    what = f"train {attention}/{remat}/batch {batch}"
    row = check.start("train", what, 0.85, attention=attention, remat=remat, batch=batch)
    if row is None:
      continue
    try:
      config = train_config(check, attention, remat)
      setup = train_step.make_setup(config, mesh)
      if "state" not in holder or any(x.is_deleted() for x in jax.tree.leaves(holder["state"])):
        fresh_state(config, setup)
      setup.rest = holder["rest"]
      batch_np = common.random_batch(config.model, batch, text_len)
      spec = {k: v.ndim for k, v in batch_np.items()}
      shardings = train_step.batch_shardings(mesh, spec)
      dev_batch = {k: jax.device_put(v, shardings[k]) for k, v in batch_np.items()}
      peak_before = _memory_stats().get("peak_bytes_in_use")
      t0 = time.perf_counter()
      compiled = train_step.jit_train_step(setup, spec).lower(
          holder["state"], setup.rest, dev_batch).compile()
      row["compile_s"] = time.perf_counter() - t0
      mem = compiled.memory_analysis()
      if mem is not None:
        row["xla_temporaries_per_example"] = mem.temp_size_in_bytes / batch

      def step():
        holder["state"], metrics = compiled(holder["state"], setup.rest, dev_batch)
        return metrics["loss"]

      common.jax_sync(step())                                   # warm-up
      t = common.time_calls(step, warmup=0, repeats=repeats)
      length = batch_np["tokens"].shape[1]
      model_flops = flops.train_step(config.model, batch, length)["total"]
      stats = _memory_stats()
      peak = stats.get("peak_bytes_in_use")
      row.update(seq_len=length, step=t.to_json(), model_flops=model_flops,
                 model_flops_per_s=model_flops / t.median, state_bytes=holder["bytes"],
                 peak_bytes_in_use=peak, peak_raised=bool(peak and peak_before is not None
                                                         and peak > peak_before))
      if peak and row["peak_raised"]:
        row["activations_per_example"] = (peak - holder["bytes"]) / batch
      mm = check.report.get("ceilings", {}).get("matmul", {}).get("flops_per_s")
      if mm:
        row["ratio_to_matmul"] = row["model_flops_per_s"] / mm
      check.log(f"{what}: {t.median * 1e3:.1f} ms, {row['model_flops_per_s'] / 1e12:.1f} "
                f"TFLOP/s")
      del compiled
    except Exception as e:  # an OOM is a result, not a crash
      row.update(check.error(what, e))
    check.write()
  holder.clear()


# -- 3 + 4. prefill and decode -----------------------------------------------------------
def lm_shapes(check: Check):
  """(LM config, prompt length, batches, new tokens for the decode figure)."""
  from benchmarks import bench_train
  if check.smoke:
    cfg = bench_train.load_config("tiny").model.lm
    return cfg, 24, (1,), 3
  from configs import paper
  return paper.get_model_config().lm, 1728, (1, 8), 16 if check.quick else 32


def _read_bytes(lm_cfg, param_bytes: int, batch: int, cache_len: int, itemsize: int) -> int:
  """Bytes one decode step reads: every weight but the input embedding table
  (one row per token), plus both KV caches."""
  embed = lm_cfg.vocab_size * lm_cfg.width * itemsize
  cache = 2 * lm_cfg.depth * batch * lm_cfg.num_kv_heads * cache_len * lm_cfg.head_dim * itemsize
  return param_bytes - embed + cache


def ours_inference(check: Check) -> None:
  import jax
  import jax.numpy as jnp
  from flax import nnx
  from benchmarks import common
  from facetrack_jax import flops, sharding
  from facetrack_jax.generate import generate
  from facetrack_jax.models.lm import LM
  cfg, prompt, batches, new = lm_shapes(check)
  dtype = jnp.float32 if check.smoke else jnp.bfloat16
  repeats = 2 if check.smoke else 3 if check.quick else 5
  mm = check.report["ceilings"]["matmul"]["flops_per_s"]
  bw = check.report["ceilings"]["read"]["bytes_per_s"]
  mesh = sharding.make_mesh((1, 1, 1), devices=jax.devices()[:1])
  with sharding.use_mesh(mesh):
    lm0 = nnx.jit(lambda: LM(cfg, dtype=dtype, param_dtype=dtype, rngs=nnx.Rngs(0),
                             scan_layers=not check.smoke))()
  graphdef, state = nnx.split(lm0)
  param_bytes = _nbytes(state)
  check.report["lm"] = dict(depth=cfg.depth, width=cfg.width, vocab=cfg.vocab_size,
                            dtype=str(jnp.dtype(dtype)), param_bytes=param_bytes,
                            prompt_len=prompt, decode_new_tokens=new)
  for attention in PATHS:
    lm = nnx.merge(graphdef, state)
    lm.attention = attention        # same weights, the other path
    for b in batches:
      what = f"prefill {attention}/batch {b}"
      row = check.start("prefill", what, 0.55, attention=attention, batch=b, prompt_len=prompt)
      if row is None:
        continue
      try:
        x = jax.random.normal(jax.random.key(b), (b, prompt, cfg.width), dtype)
        mask = jnp.ones((b, prompt), bool)
        run = lambda n: generate(lm, x, mask, max_new_tokens=n, eos_id=-1)
        t0 = time.perf_counter()
        common.jax_sync(run(1))
        row["compile_s"] = time.perf_counter() - t0
        t = common.time_calls(lambda: run(1), warmup=1, repeats=repeats)
        f = flops.decode_forward(cfg, b, prompt, 1)
        row.update(time=t.to_json(), model_flops=f, model_flops_per_s=f / t.median,
                   ratio_to_matmul=f / t.median / mm)
        check.log(f"{what}: {t.median * 1e3:.1f} ms ({row['ratio_to_matmul']:.2f} of the dot)")
        if b == 1:
          what = f"decode {attention}/batch 1"
          drow = dict(attention=attention, batch=1, prompt_len=prompt, new_tokens=new)
          check.report["decode"].append(drow)
          common.jax_sync(run(1 + new))
          tn = common.time_calls(lambda: run(1 + new), warmup=0, repeats=repeats)
          per = (tn.median - t.median) / new
          read = _read_bytes(cfg, param_bytes, 1, prompt + 1 + new, jnp.dtype(dtype).itemsize)
          drow.update(generate_time=tn.to_json(), per_token_s=per, tokens_per_s=1 / per,
                      bytes_read_per_token=read, bandwidth_fraction=read / per / bw)
          check.log(f"{what}: {per * 1e3:.2f} ms/token ({drow['bandwidth_fraction']:.2f} of "
                    "the read bandwidth)")
      except Exception as e:
        (drow if what.startswith("decode") else row).update(check.error(what, e))
      check.write()
  del lm0, state


def hf_inference(check: Check) -> None:
  """HF transformers' Qwen2 (sdpa) on the same shapes, random weights."""
  what = "HF transformers prefill/decode"
  if not check.has_time(0.3, what):
    return
  try:
    import torch
    import transformers
  except ImportError as e:
    check.report["skipped"].append(f"{what}: {e}")
    return
  from benchmarks import common
  from facetrack_jax import flops
  cfg, prompt, batches, new = lm_shapes(check)
  device = "cuda" if torch.cuda.is_available() else "cpu"
  dtype = torch.float32 if check.smoke else torch.bfloat16
  repeats = 2 if check.smoke else 3 if check.quick else 5
  mm = check.report["ceilings"]["matmul"]["flops_per_s"]
  bw = check.report["ceilings"]["read"]["bytes_per_s"]
  hf_cfg = transformers.Qwen2Config(
      vocab_size=cfg.vocab_size, hidden_size=cfg.width, intermediate_size=cfg.mlp_dim,
      num_hidden_layers=cfg.depth, num_attention_heads=cfg.num_heads,
      num_key_value_heads=cfg.num_kv_heads, rope_theta=cfg.rope_theta,
      rms_norm_eps=cfg.rms_eps, tie_word_embeddings=cfg.tie_embeddings,
      max_position_embeddings=prompt + new + 8, attn_implementation="sdpa")
  old = torch.get_default_dtype()
  torch.set_default_dtype(dtype)
  try:
    with torch.device(device):
      model = transformers.Qwen2ForCausalLM(hf_cfg).eval()
  finally:
    torch.set_default_dtype(old)
  param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
  check.report["hf"] = dict(transformers=transformers.__version__, torch=torch.__version__,
                            device=device, dtype=str(dtype), attn_implementation="sdpa",
                            param_bytes=param_bytes)
  sync = common.torch_sync
  for b in batches:
    what = f"prefill hf/batch {b}"
    row = check.start("prefill", what, 0.35, attention="hf_sdpa", batch=b, prompt_len=prompt)
    if row is None:
      break
    try:
      ids = torch.randint(7, cfg.vocab_size, (b, prompt), device=device)
      with torch.no_grad():
        prefill = lambda: model(input_ids=ids, use_cache=True, logits_to_keep=1).logits
        t = common.time_calls(prefill, warmup=1, repeats=repeats, sync=sync)
        f = flops.decode_forward(cfg, b, prompt, 1)
        row.update(time=t.to_json(), model_flops=f, model_flops_per_s=f / t.median,
                   ratio_to_matmul=f / t.median / mm)
        check.log(f"{what}: {t.median * 1e3:.1f} ms")
        if b == 1:
          what = "decode hf/batch 1"
          drow = dict(attention="hf_sdpa", batch=1, prompt_len=prompt, new_tokens=new)
          check.report["decode"].append(drow)
          gen = lambda n: model.generate(ids, max_new_tokens=n, min_new_tokens=n,
                                         do_sample=False, pad_token_id=0)
          t1 = common.time_calls(lambda: gen(1), warmup=1, repeats=repeats, sync=sync)
          tn = common.time_calls(lambda: gen(1 + new), warmup=0, repeats=repeats, sync=sync)
          per = (tn.median - t1.median) / new
          read = _read_bytes(cfg, param_bytes, 1, prompt + 1 + new, dtype.itemsize)
          drow.update(generate_time=tn.to_json(), per_token_s=per, tokens_per_s=1 / per,
                      bytes_read_per_token=read, bandwidth_fraction=read / per / bw)
          check.log(f"{what}: {per * 1e3:.2f} ms/token")
    except Exception as e:
      (drow if what.startswith("decode") else row).update(check.error(what, e))
    check.write()
  del model
  if device == "cuda":
    torch.cuda.empty_cache()


# -- the report --------------------------------------------------------------------------
def criteria(r: dict) -> list[tuple[str, str, bool | None]]:
  """Issue 24's "done when" items on the figures present: (item, value, met)."""
  out = []
  ok_train = [t for t in r["train"] if "model_flops_per_s" in t]
  if ok_train:
    biggest = max(t["batch"] for t in ok_train)
    best = max((t for t in ok_train if t["batch"] == biggest), key=lambda t: t["model_flops_per_s"])
    out.append((f"train TFLOP/s at the largest batch that ran ({biggest}; "
                f"{best['attention']}/{best['remat']}) ≥ 450",
                f"{best['model_flops_per_s'] / 1e12:.0f}", best["model_flops_per_s"] >= 450e12))
    out.append(("batch ≥ 8 runs", str(biggest), biggest >= 8))
    acts = [t for t in ok_train if "activations_per_example" in t]
    if acts:
      low = min(acts, key=lambda t: t["activations_per_example"])
      out.append((f"activations per example ≤ 6.25 GB ({low['attention']}/{low['remat']}, "
                  f"batch {low['batch']}; peak − state)",
                  f"{low['activations_per_example'] / 1e9:.2f} GB",
                  low["activations_per_example"] <= 6.25e9))
  pre = {(p["attention"], p["batch"]): p for p in r["prefill"] if "time" in p}
  hf1 = pre.get(("hf_sdpa", 1))
  for a in PATHS:
    if hf1 and (a, 1) in pre:
      ours = pre[(a, 1)]["time"]["median_s"]
      out.append((f"prefill batch 1 ({a}) ≤ HF sdpa", f"{ours * 1e3:.1f} vs "
                  f"{hf1['time']['median_s'] * 1e3:.1f} ms", ours <= hf1["time"]["median_s"]))
    for (pa, b), p in pre.items():
      if pa == a and b > 1:
        out.append((f"prefill batch {b} ({a}) ≥ 0.8 of the matmul", f"{p['ratio_to_matmul']:.2f}",
                    p["ratio_to_matmul"] >= 0.8))
  for d in r["decode"]:
    if "bandwidth_fraction" in d and d["attention"] != "hf_sdpa":
      out.append((f"decode batch 1 ({d['attention']}) ≥ 0.8 of the read bandwidth",
                  f"{d['bandwidth_fraction']:.2f}", d["bandwidth_fraction"] >= 0.8))
  return out


def markdown(r: dict) -> str:
  dev = r.get("device", {})
  lines = [f"# GPU check: {dev.get('device_kind', '?')} ({dev.get('platform', '?')})", "",
           f"`{r['command']}` — {r['date']} UTC, {r.get('elapsed_s', 0):.0f} s"
           + (" — SMOKE (tiny shapes)" if r["smoke"] else ""), ""]
  c = r.get("ceilings")
  if c:
    lines += [f"Ceilings: {c['matmul']['dtype']} {c['matmul']['n']}³ dot "
              f"{c['matmul']['flops_per_s'] / 1e12:.1f} TFLOP/s; read "
              f"{c['read']['bytes_per_s'] / 1e12:.2f} TB/s "
              f"({c['read']['bytes'] / 2**30:.2f} GiB sum).", ""]
  if r["train"]:
    lines += ["## Train step", "", "| attention | remat | batch | ms/step | TFLOP/s | ÷ dot | "
              "XLA temp / ex. (GB) | peak − state / ex. (GB) | compile s |",
              "|---|---|---|---|---|---|---|---|---|"]
    for t in r["train"]:
      if "step" not in t:
        lines.append(f"| {t['attention']} | {t['remat']} | {t['batch']} | "
                     f"{'out of memory' if t.get('oom') else 'error'} | | | | | |")
        continue
      gb = lambda k: f"{t[k] / 1e9:.2f}" if t.get(k) is not None else "–"
      lines.append(f"| {t['attention']} | {t['remat']} | {t['batch']} | "
                   f"{t['step']['median_s'] * 1e3:.1f} | {t['model_flops_per_s'] / 1e12:.1f} | "
                   f"{t.get('ratio_to_matmul', float('nan')):.2f} | "
                   f"{gb('xla_temporaries_per_example')} | {gb('activations_per_example')} | "
                   f"{t.get('compile_s', 0):.0f} |")
    lines.append("")
  if r["prefill"]:
    lines += ["## Prefill", "", "| path | batch | prompt | ms | ÷ dot |", "|---|---|---|---|---|"]
    for p in r["prefill"]:
      val = (f"{p['time']['median_s'] * 1e3:.1f} | {p['ratio_to_matmul']:.2f}" if "time" in p
             else f"{'out of memory' if p.get('oom') else 'error'} |")
      lines.append(f"| {p['attention']} | {p['batch']} | {p['prompt_len']} | {val} |")
    lines.append("")
  if r["decode"]:
    lines += ["## Decode (batch 1)", "", "| path | ms/token | tok/s | ÷ read bandwidth |",
              "|---|---|---|---|"]
    for d in r["decode"]:
      val = (f"{d['per_token_s'] * 1e3:.2f} | {d['tokens_per_s']:.0f} | "
             f"{d['bandwidth_fraction']:.2f}" if "per_token_s" in d else "error | |")
      lines.append(f"| {d['attention']} | {val} |")
    lines.append("")
  crit = criteria(r)
  if crit:
    lines += ["## Issue 24's targets", "", "| item | value | met |", "|---|---|---|"]
    lines += [f"| {k} | {v} | {'yes' if m else 'no'} |" for k, v, m in crit]
    lines.append("")
  if r["skipped"] or r["errors"]:
    lines += ["## Skipped / errors", ""]
    lines += [f"- skipped: {s}" for s in r["skipped"]]
    lines += [f"- {e['what']}: {e['error'][:300]}" for e in r["errors"]]
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else list(argv)
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--smoke", action="store_true", help="tiny shapes (CPU, seconds)")
  p.add_argument("--quick", action="store_true", help="a shorter grid and fewer repeats")
  p.add_argument("--budget-s", type=float, default=None,
                 help="time budget in seconds (default 420; smoke 600): a part starts "
                      "only before its share of it (HF 0.3, prefill/decode 0.55, train 0.85)")
  p.add_argument("--skip", default="", help="comma-separated: train,inference,hf")
  p.add_argument("--out", help="JSON path (default benchmarks/results/gpu-<device>.json)")
  p.add_argument("--copy-to",
                 help="also write both files into this folder (the device tool's $OUT)")
  args = p.parse_args(argv)
  args.argv = argv
  args.budget_s = args.budget_s or (600.0 if args.smoke else 420.0)
  skip = set(filter(None, args.skip.split(",")))
  # torch shares the card: jax must not take 75 % of it up front.
  os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
  import jax
  from benchmarks import common
  if not args.out:
    args.out = str(ROOT / "benchmarks" / "results" / f"{common.machine_name()}.json")
  check = Check(args)
  check.report["device"] = common.device_info()
  check.log(f"device {check.report['device']['device_kind']}, budget {check.budget:.0f} s, "
            f"writing {args.out}")
  check.report["ceilings"] = ceilings(check)
  check.write()
  # HF first: torch frees its memory to the driver (empty_cache), while XLA's
  # allocator keeps what it has grown to, which torch could not get back.
  for name, fn in (("hf", hf_inference), ("inference", ours_inference), ("train", train)):
    if name in skip:
      check.report["skipped"].append(f"{name}: --skip")
      continue
    try:
      fn(check)
    except Exception as e:
      check.error(name, e)
    check.write()
  jax.clear_caches()
  check.log(f"done: {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
