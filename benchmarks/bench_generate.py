"""Item 3: greedy KV-cache decoding, ours (one jitted ``lax.while_loop``)
against HF ``generate`` on the same weights and prompt embeddings.

    python -m benchmarks.bench_generate [--config small] [--new-tokens 64] [--dtype bfloat16]

The LM of the config (random init, exported with
:mod:`benchmarks.torch_reference`) continues the same prompt embeddings —
a captioning prompt's length: ``num_visual_tokens + 32`` — at batch 1 and 8.
Both produce exactly ``new_tokens`` tokens: ours with an ``eos_id`` that
cannot occur, HF with ``min_new_tokens = max_new_tokens`` and no eos. The
time includes the prefill; the prefill-only time (1 new token) is measured
too, so ``decode_tokens_per_s`` = B·(N−1) / (t_N − t_1) isolates the
per-token loop. Calls alternate (ours, HF, ours, ...). Also
reported: the share of generated tokens on which the two agree (greedy on
the same weights: ~1; fp32 near-ties may flip a late token).

``--dtype bfloat16``: both sides hold the weights in bf16 (ours: the fp32
init cast, bf16 compute and KV cache; HF: ``torch_dtype=bfloat16``); the
agreement is then lower (two bf16 roundings of the same model).

Weight reads: a decode step reads every LM weight once, so at batch 1 the
loop's tokens/s × the LM's weight bytes is the rate it reads them; it is
reported beside the memory read bandwidth measured in the same run
(:func:`common.read_bandwidth`, before and after; the higher is used).
"""

from __future__ import annotations

import argparse
import json
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmarks import bench_train, common
from facetrack_jax import flops

TARGET_SPEEDUP = {"1": 3.0, "8": 2.0}   # ours ÷ HF generate, fp32, per batch (issue 19)
PROMPT_TEXT = 32     # text tokens of the prompt besides the visual placeholders


def run(config_name: str = "small", new_tokens: int = 64, batches=(1, 8),
        repeats: int = 3, dtype: str = "float32") -> dict:
  import torch
  import transformers
  from facetrack_jax import sharding
  from facetrack_jax.generate import generate
  from facetrack_jax.models.facetrack import num_visual_tokens
  from facetrack_jax.models.lm import LM
  from benchmarks import torch_reference as tr
  torch.set_num_threads(common.cores())
  config = bench_train.load_config(config_name)
  cfg = config.model.lm
  if dtype not in ("float32", "bfloat16"):
    raise ValueError(f"bench_generate: dtype must be float32 or bfloat16, got {dtype!r}")
  prompt_len = num_visual_tokens(config.model) + PROMPT_TEXT
  device = "cuda" if torch.cuda.is_available() else "cpu"
  common.log(f"generate: LM of {config_name} in {dtype}, prompt {prompt_len}, "
             f"{new_tokens} new tokens")
  bandwidth = [common.read_bandwidth()]
  with sharding.use_mesh():
    lm = LM(cfg, rngs=nnx.Rngs(0))
  with tempfile.TemporaryDirectory() as d:
    tr.export_lm(lm, cfg, d)
    cls = transformers.Qwen2ForCausalLM if cfg.qkv_bias else transformers.LlamaForCausalLM
    hf = cls.from_pretrained(d, dtype=getattr(torch, dtype)).to(device).eval()
  if dtype == "bfloat16":   # the same weights, cast; bf16 compute and KV cache
    with sharding.use_mesh():
      lm16 = LM(cfg, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
      nnx.update(lm16, jax.tree.map(lambda x: x.astype(jnp.bfloat16), nnx.state(lm, nnx.Param)))
    lm = lm16
  weight_bytes = sum(x.nbytes for x in jax.tree.leaves(nnx.state(lm, nnx.Param)))

  out = dict(config=config_name, dtype=dtype, prompt_len=prompt_len, new_tokens=new_tokens,
             hf_attn_implementation=hf.config._attn_implementation,
             lm_weight_bytes=weight_bytes, per_batch={})
  for b in batches:
    rng = np.random.default_rng(b)
    tokens = jnp.asarray(rng.integers(7, cfg.vocab_size, (b, prompt_len)), jnp.int32)
    with sharding.use_mesh():
      x_bld = lm.embed(tokens)
    mask = jnp.ones((b, prompt_len), bool)
    x_t = torch.from_numpy(np.asarray(x_bld, np.float32)).to(device, getattr(torch, dtype))
    mask_t = torch.ones((b, prompt_len), dtype=torch.long, device=device)

    def ours(n=new_tokens):
      with sharding.use_mesh():
        return generate(lm, x_bld, mask, max_new_tokens=n, eos_id=-1)

    def theirs(n=new_tokens):
      with torch.no_grad():
        return hf.generate(inputs_embeds=x_t, attention_mask=mask_t, max_new_tokens=n,
                           min_new_tokens=n, do_sample=False, use_cache=True,
                           eos_token_id=None, pad_token_id=0)

    common.log(f"generate: batch {b}: compiling ours, warming HF")
    ours_tok = np.asarray(common.jax_sync(ours()))
    common.jax_sync(ours(1))                       # compiles the prefill-only variant
    hf_tok = theirs().cpu().numpy()
    if hf_tok.shape != ours_tok.shape:
      raise RuntimeError(f"HF generated {hf_tok.shape}, ours {ours_tok.shape}: lengths differ")
    hf_at, thread_info = common.torch_thread_variants(theirs)
    # N tokens and 1 token (prefill + first token), alternately ours / HF.
    calls = {("ours", new_tokens): ours, ("ours", 1): lambda: ours(1)}
    for n, fn in hf_at.items():
      calls[(f"hf{n}", new_tokens)] = fn
      calls[(f"hf{n}", 1)] = common.in_torch_threads(n, lambda: theirs(1))
    samples = {k: [] for k in calls}
    for _ in range(repeats):
      for k, fn in calls.items():
        sync = common.jax_sync if k[0] == "ours" else common.torch_sync
        samples[k] += common.time_calls(fn, warmup=0, repeats=1, sync=sync).samples
    torch.set_num_threads(common.cores())
    t = {k: common.Timing(v).median for k, v in samples.items()}
    e2e = {who: b * new_tokens / t[(who, new_tokens)] for who, _ in calls}
    decode = {who: b * (new_tokens - 1) / max(t[(who, new_tokens)] - t[(who, 1)], 1e-9)
              for who, _ in calls}
    best = min(hf_at, key=lambda n: t[(f"hf{n}", new_tokens)])
    out["per_batch"][str(b)] = dict(
        seconds={f"{who}_{n}tok": v for (who, n), v in t.items()},
        tokens_per_s=e2e, decode_tokens_per_s=decode, hf_best_threads=best,
        ours_tokens_per_s=e2e["ours"], hf_tokens_per_s=e2e[f"hf{best}"],
        speedup=e2e["ours"] / e2e[f"hf{best}"],
        decode_speedup=decode["ours"] / decode[f"hf{best}"],
        speedup_by_threads={str(n): e2e["ours"] / e2e[f"hf{n}"] for n in hf_at},
        hf_warmup_s=thread_info["warmup_s"], hf_threads_dropped=thread_info["dropped"],
        token_agreement=float((hf_tok == ours_tok).mean()),
        flops=flops.decode_forward(cfg, b, prompt_len, new_tokens),
        # one decode step reads every weight once: steps/s × bytes
        weight_read_bytes_per_s=decode["ours"] / b * weight_bytes)
    v = out["per_batch"][str(b)]
    common.log(f"generate: batch {b}: ours {v['ours_tokens_per_s']:.0f} tok/s, HF "
               f"{v['hf_tokens_per_s']:.0f} tok/s ({best} threads): {v['speedup']:.2f}x; "
               f"decode only {v['decode_speedup']:.2f}x")
  bandwidth.append(common.read_bandwidth())
  out["read_bandwidth_bytes_per_s"] = bandwidth
  for v in out["per_batch"].values():
    v["weight_read_of_bandwidth"] = v["weight_read_bytes_per_s"] / max(bandwidth)
  out["target_speedup"] = TARGET_SPEEDUP
  out["min_speedup"] = min(v["speedup"] for v in out["per_batch"].values())
  out["min_decode_speedup"] = min(v["decode_speedup"] for v in out["per_batch"].values())
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--config", default="small")
  p.add_argument("--new-tokens", type=int, default=64)
  p.add_argument("--batches", default="1,8")
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
  args = p.parse_args(argv)
  res = run(args.config, args.new_tokens, tuple(int(x) for x in args.batches.split(",")),
            args.repeats, args.dtype)
  print(json.dumps(res, indent=1))


if __name__ == "__main__":
  from facetrack_jax import host_memory
  host_memory.retain_freed_memory()    # CPU: keep freed buffers (module doc)
  main()
