"""Runs the benchmarks and writes ``benchmarks/results/<machine>.{json,md}``.

    python -m benchmarks.run [--quick] [--only train,torch,generate,input] [--machine NAME]

Items (each a ratio measured in this one run, absolute numbers beside it):

  train     train step of ``small``: model FLOP/s ÷ peak matmul FLOP/s   (≥ 0.5)
  torch     the same step, PyTorch reference time ÷ ours, fp32 both     (reported)
  torch_bf16  bf16 compute: ours (model.dtype=bfloat16, fp32 params) ÷
            PyTorch torch.autocast(bfloat16) over fp32 weights         (≥ 1.5)
  generate  greedy KV-cache decoding, ours ÷ HF generate, batch 1 and 8, fp32
            (≥ 3 at batch 1, ≥ 2 at batch 8); batch 1's weight reads ÷ the
            read bandwidth measured in the same run                    (≥ 0.8)
  generate_bf16  the same with bf16 weights on both sides (reported), and
            ours bf16 ÷ ours fp32 at batch 1                           (≥ 1.7)
  input     grain pipeline ex/s ÷ tiny train step ex/s                  (≥ 5)
            and data_prep full ÷ decode-only clips/s                    (≥ 0.5)

``--cores N`` pins the process to N cores first (XLA sizes its thread pool
from the affinity mask, torch is set to N threads). ``--quick`` is a smoke run (tiny config, few repeats, ~minutes). An item that
fails is recorded with its error and the others still run; the exit status
is then 1. Device-agnostic: the peak is fp32 on CPU, bf16 elsewhere, and the
device kind is recorded.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import sys
import time
import traceback

from benchmarks import common

ITEMS = ("train", "torch", "torch_bf16", "generate", "generate_bf16", "input")
BANDWIDTH_TARGET = 0.8                  # batch-1 fp32 weight reads ÷ read bandwidth
BF16_OVER_FP32_TARGET = 1.7             # our batch-1 tokens/s, bf16 ÷ fp32 weights
RESULTS = pathlib.Path(__file__).parent / "results"


def _settings(quick: bool) -> dict:
  if quick:
    return dict(config="tiny", batch=4, text_len=32, repeats=2, breakdown=False,
                new_tokens=8, gen_batches=(1, 8), gen_repeats=1,
                clips=6, batches=6, prep_clips=2)
  return dict(config="small", batch=8, text_len=64, repeats=3, breakdown=True,
              new_tokens=64, gen_batches=(1, 8), gen_repeats=3,
              clips=24, batches=12, prep_clips=8)


def run_items(only, s: dict) -> dict:
  from benchmarks import bench_generate, bench_input, bench_torch, bench_train
  results, js = {}, None
  for item in only:
    t0 = time.perf_counter()
    try:
      if item == "train":
        config = bench_train.load_config(s["config"])
        batch_np = common.random_batch(config.model, s["batch"], s["text_len"])
        js = bench_train.build_step(config, batch_np)
        results[item] = bench_train.run(s["config"], s["batch"], s["text_len"], s["repeats"],
                                        s["breakdown"], js=js)
      elif item == "torch":
        results[item] = bench_torch.run(s["config"], s["batch"], s["text_len"], s["repeats"],
                                        js=js)
      elif item == "torch_bf16":
        results[item] = bench_torch.run(s["config"], s["batch"], s["text_len"], s["repeats"],
                                        precision="bf16")
      elif item in ("generate", "generate_bf16"):
        results[item] = bench_generate.run(s["config"], s["new_tokens"], s["gen_batches"],
                                           s["gen_repeats"],
                                           "bfloat16" if item == "generate_bf16" else "float32")
      elif item == "input":
        results[item] = bench_input.run(s["clips"], s["batches"], s["repeats"], s["prep_clips"])
    except Exception as e:  # record, go on with the other items
      traceback.print_exc()
      results[item] = dict(error=f"{type(e).__name__}: {e}")
    results[item]["wall_s"] = time.perf_counter() - t0
  return results


# -- the report ---------------------------------------------------------------------------
def _met(x, target) -> str:
  return "yes" if x >= target else "**no**"


def table_rows(r: dict) -> list[tuple[str, str, str, str, str]]:
  """(item, ratio, absolute numbers, target, met) per figure."""
  rate = common.fmt_rate
  rows = []
  if "train" in r and "error" not in r["train"]:
    t = r["train"]
    xla = "n/a" if t["flops_xla"] is None else f"{t['xla_over_analytic']:.2f}"
    rows.append(("1 train step (model FLOP/s ÷ peak matmul)", f"{t['ratio_to_peak']:.2f}",
                 f"{t['config']} b{t['batch']}×{t['seq_len']} tok: {t['step']['median_s']:.2f} s/step, "
                 f"{rate(t['achieved_flops_per_s'])} of {rate(t['peak_flops_per_s'])} "
                 f"({t['peaks'][0]['dtype']} {t['peaks'][0]['n']}² dot); "
                 f"{t['flops_analytic']['total']:.3g} FLOP/step, XLA/analytic {xla}",
                 "≥ 0.5", _met(t["ratio_to_peak"], t["target_ratio"])))
  for item, label in (("torch", "2 train step fp32, PyTorch ÷ ours"),
                      ("torch_bf16", "2b train step bf16 compute, PyTorch autocast ÷ ours")):
    if item not in r or "error" in r[item]:
      continue
    t = r[item]
    by = ", ".join([f"{v['median_s']:.2f} s at {n} thr" for n, v in t["torch_step"].items()]
                   + [f"≥ {t['torch_warmup_s'][n]:.0f} s at {n} thr (dropped)"
                      for n in t["torch_threads_dropped"]])
    rows.append((label, f"{t['speedup']:.2f}×",
                 f"ours {t['jax_step']['median_s']:.2f} s, PyTorch {by} "
                 f"(HF {t['torch_info']['attn_implementation']} attention; steps back to back; "
                 f"first step after a switch: ours {t['jax_step_after_switch']['median_s']:.2f} s, "
                 f"PyTorch " + ", ".join(f"{v['median_s']:.2f} s at {n} thr" for n, v in
                                         t["torch_step_after_switch"].items()) + ")",
                 "≥ 1.5×" if item == "torch_bf16" else "reported",
                 _met(t["speedup"], t["target_speedup"]) if item == "torch_bf16" else "–"))
  for item, label in (("generate", "3 greedy decoding"), ("generate_bf16", "3b greedy decoding bf16")):
    if item not in r or "error" in r[item]:
      continue
    g = r[item]
    for b, v in g["per_batch"].items():
      n = g["new_tokens"]
      hf = ", ".join([f"{x:.0f} tok/s at {k[2:]} thr" for k, x in v["tokens_per_s"].items()
                      if k.startswith("hf")]
                     + [f"≤ {int(b) * n / v['hf_warmup_s'][k]:.0f} tok/s at {k} thr (dropped)"
                        for k in v["hf_threads_dropped"]])
      target = g["target_speedup"].get(b) if item == "generate" else None
      rows.append((f"{label} batch {b}, ours ÷ HF generate", f"{v['speedup']:.2f}×",
                   f"ours {v['ours_tokens_per_s']:.0f} tok/s, HF {hf} ({n} new after "
                   f"{g['prompt_len']}, prefill included); decode loop alone "
                   f"{v['decode_speedup']:.1f}× ({v['decode_tokens_per_s']['ours']:.0f} vs "
                   f"{v['decode_tokens_per_s']['hf' + str(v['hf_best_threads'])]:.0f} tok/s); "
                   f"same tokens {v['token_agreement']:.0%}",
                   f"≥ {target:g}×" if target else "reported",
                   _met(v["speedup"], target) if target else "–"))
    one = g["per_batch"].get("1")
    if one and "weight_read_of_bandwidth" in one:
      bw = max(g["read_bandwidth_bytes_per_s"])
      rows.append((f"{label} batch 1, weight reads ÷ read bandwidth",
                   f"{one['weight_read_of_bandwidth']:.2f}",
                   f"{one['decode_tokens_per_s']['ours']:.0f} tok/s × "
                   f"{g['lm_weight_bytes'] / 1e6:.0f} MB = "
                   f"{one['weight_read_bytes_per_s'] / 1e9:.1f} GB/s; jitted sum over 512 MB "
                   + " / ".join(f"{x / 1e9:.1f}" for x in g["read_bandwidth_bytes_per_s"])
                   + f" GB/s (before / after; {bw / 1e9:.1f} used)",
                   f"≥ {BANDWIDTH_TARGET}" if item == "generate" else "reported",
                   _met(one["weight_read_of_bandwidth"], BANDWIDTH_TARGET)
                   if item == "generate" else "–"))
  if all(k in r and "error" not in r[k] for k in ("generate", "generate_bf16")):
    f32, b16 = (r[k]["per_batch"].get("1") for k in ("generate", "generate_bf16"))
    if f32 and b16:
      ratio = b16["ours_tokens_per_s"] / f32["ours_tokens_per_s"]
      rows.append(("3c our batch-1 decoding, bf16 ÷ fp32 weights", f"{ratio:.2f}×",
                   f"{b16['ours_tokens_per_s']:.0f} vs {f32['ours_tokens_per_s']:.0f} tok/s "
                   f"(prefill included); decode loop alone "
                   f"{b16['decode_tokens_per_s']['ours']:.0f} vs "
                   f"{f32['decode_tokens_per_s']['ours']:.0f} tok/s",
                   f"≥ {BF16_OVER_FP32_TARGET}×", _met(ratio, BF16_OVER_FP32_TARGET)))
  if "input" in r and "error" not in r["input"]:
    i = r["input"]
    rows.append(("4a grain pipeline ÷ tiny train step (examples/s)", f"{i['ratio']:.1f}×",
                 f"pipeline {i['pipeline']['examples_per_s']:.0f} ex/s "
                 f"({i['pipeline']['num_threads']} threads), train "
                 f"{i['train_tiny']['examples_per_s']:.0f} ex/s", "≥ 5×",
                 _met(i["ratio"], i["target_ratio"])))
    d = i["data_prep"]
    rows.append(("4b data_prep full ÷ decode-only (clips/s)", f"{d['ratio_full_over_decode']:.2f}",
                 f"full {d['full_clips_per_s']:.2f} clips/s, decode {d['decode_clips_per_s']:.2f} "
                 f"clips/s ({d['num_clips']} clips)", "≥ 0.5",
                 _met(d["ratio_full_over_decode"], d["target_ratio"])))
  return rows


def markdown(report: dict) -> str:
  dev, r = report["device"], report["results"]
  lines = [f"# Benchmarks on `{report['machine']}`", "",
           f"{report['date']}; {dev['device_kind']} ({dev['platform']}), {dev['cpu_count']} CPU "
           f"cores ({dev.get('cpu_model', 'CPU model not recorded')}); jax {dev['jax']}; "
           f"GLIBC_TUNABLES {dev.get('glibc_tunables') or 'unset'}; "
           f"load average {dev['load_average'][0]:.1f} at start, "
           f"{report['load_average_end'][0]:.1f} at end; total {report['wall_s'] / 60:.1f} min"
           + ("; **--quick (smoke run)**" if report["quick"] else "") + ".", "",
           "| figure | ratio | absolute | target | met |", "|---|---|---|---|---|"]
  lines += ["| " + " | ".join(row) + " |" for row in table_rows(r)]
  for item, v in r.items():
    if "error" in v:
      lines.append(f"| {item} | — | failed: {v['error']} | | **no** |")
  bd = r.get("train", {}).get("breakdown")
  if bd:
    lines += ["", "Forward + backward of each tower alone (same batch):", "",
              "| piece | FLOP | s | FLOP/s | ÷ peak |", "|---|---|---|---|---|"]
    lines += [f"| {k} | {v['flops']:.3g} | {v['seconds']:.2f} | {common.fmt_rate(v['flops_per_s'])} "
              f"| {v['ratio_to_peak']:.2f} |" for k, v in bd.items()]
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--quick", action="store_true", help="smoke run: tiny config, few repeats")
  p.add_argument("--only", default=",".join(ITEMS), help=f"comma list of {ITEMS}")
  p.add_argument("--machine", help="results file name (default: derived from the device)")
  p.add_argument("--out-dir", default=str(RESULTS))
  p.add_argument("--cores", type=int, help="pin this process to its first N cores (before "
                 "jax starts): XLA and torch then use N threads. On a shared machine, "
                 "--cores 1 compares both single-threaded on one core")
  args = p.parse_args(argv)
  if args.cores:
    avail = sorted(os.sched_getaffinity(0))
    if not 1 <= args.cores <= len(avail):
      p.error(f"--cores {args.cores}: this process may use {len(avail)} cores")
    os.sched_setaffinity(0, avail[:args.cores])
  only = [x.strip() for x in args.only.split(",") if x.strip()]
  bad = [x for x in only if x not in ITEMS]
  if bad:
    p.error(f"--only: unknown item(s) {bad}; choose from {ITEMS}")
  t0 = time.perf_counter()
  device = common.device_info()
  machine = args.machine or common.machine_name() + ("-quick" if args.quick else "")
  common.log(f"benchmarks {only} on {machine} ({device['device_kind']})")
  results = run_items(only, _settings(args.quick))
  report = dict(machine=machine, date=datetime.datetime.now().isoformat(timespec="seconds"),
                quick=args.quick, device=device, settings=_settings(args.quick),
                results=results, load_average_end=list(os.getloadavg()),
                wall_s=time.perf_counter() - t0)
  out = pathlib.Path(args.out_dir)
  out.mkdir(parents=True, exist_ok=True)
  (out / f"{machine}.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
  md = markdown(report)
  (out / f"{machine}.md").write_text(md)
  print(md)
  common.log(f"wrote {out / machine}.json and .md")
  return 1 if any("error" in v for v in results.values()) else 0


if __name__ == "__main__":
  from facetrack_jax import host_memory
  host_memory.retain_freed_memory()    # CPU: keep freed buffers (module doc)
  sys.exit(main())
