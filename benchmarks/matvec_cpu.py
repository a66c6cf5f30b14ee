r"""Issue 19 §3 on CPU: how should a 1-row matmul be written so that batch-1
decoding reads the weights at the memory bandwidth?

    python -m benchmarks.matvec_cpu [--config small] [--repeats 30] [--out FILE]

One jitted call applies every matmul of the config's LM to one row, layer
after layer as a decode step does (q/k/v, o, gate/up, down, then the tied
LM head; no attention, no cache), so the weights (all the LM's bytes) are
read once per call and do not fit in cache. Variants of ``y[1, O] = x[1, I]
@ W[I, O]``, timed alternately, median of ``--repeats``:

* ``dot``: ``lax.dot`` of the 2-D row (what the model does today);
* ``vec``: ``lax.dot`` of the 1-D vector (XLA's matrix-vector path);
* ``rows2`` / ``rows8``: the row padded to 2 / 8 rows (a matmul YNNPACK takes);
* ``reduce``: ``sum(x[:, None] * W, 0)``, a fused multiply-reduce loop;
* ``wT``: the weight stored transposed ``W[O, I]``, each output a contiguous
  dot product (``dot_general`` contracting both operands' minor dims).

Each is also run with bf16 weights (fp32 accumulation). The read bandwidth
is a jitted ``sum`` over 512 MB in the same process. Writes JSON (and
prints a table): ms per call and GB/s of weights read, ÷ the bandwidth.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import bench_train, common

VARIANTS = ("dot", "vec", "rows2", "rows8", "reduce", "wT")


def lm_shapes(cfg) -> list[list[tuple[int, int]]]:
  """Per layer, the (I, O) of each matmul a decode step does, then the head."""
  d, h, kv, dh, f = cfg.width, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.mlp_dim
  layer = [(d, (h + 2 * kv) * dh), (h * dh, d), (d, 2 * f), (f, d)]
  return [layer] * cfg.depth + [[(d, cfg.vocab_size)]]


def matvec(variant: str):
  """``(x float[1, I], w) -> float[1, O]``, w as the variant stores it."""
  f32 = jnp.float32
  if variant == "dot":
    return lambda x, w: jax.lax.dot(x.astype(w.dtype), w, preferred_element_type=f32)
  if variant == "vec":
    return lambda x, w: jax.lax.dot(x[0].astype(w.dtype), w, preferred_element_type=f32)[None]
  if variant in ("rows2", "rows8"):
    n = int(variant[4:])
    return lambda x, w: jax.lax.dot(jnp.pad(x, ((0, n - 1), (0, 0))).astype(w.dtype), w,
                                    preferred_element_type=f32)[:1]
  if variant == "reduce":
    return lambda x, w: jnp.sum(x[0][:, None] * w.astype(f32), axis=0)[None]
  if variant == "wT":   # "oi,ni->no"
    return lambda x, w: jax.lax.dot_general(w, x.astype(w.dtype), (((1,), (1,)), ((), ())),
                                            preferred_element_type=f32).T
  raise ValueError(variant)


def make_chain(variant: str, shapes, dtype, seed: int = 0):
  """(jitted fn(x) -> float[1, V], weights, bytes of weights)."""
  rng = np.random.default_rng(seed)
  ws = []
  for layer in shapes:
    for i, o in layer:
      w = (rng.standard_normal((i, o), np.float32) / np.sqrt(i)).astype(dtype)
      ws.append(jnp.asarray(w.T.copy() if variant == "wT" else w))
  mv = matvec(variant)
  d = shapes[0][0][0]

  @jax.jit
  def chain(x, ws):
    it = iter(ws)
    for layer in shapes[:-1]:
      qkv = mv(x, next(it))
      o = mv(qkv[:, :layer[1][0]], next(it))
      gu = mv(x, next(it))
      f = layer[3][0]
      down = mv(jax.nn.silu(gu[:, :f]) * gu[:, f:], next(it))
      x = x + 0.1 * jnp.tanh(o + down)
    return mv(x, next(it))

  nbytes = sum(w.nbytes for w in ws)
  x0 = jnp.asarray(rng.standard_normal((1, d), np.float32))
  return (lambda: chain(x0, ws)), nbytes


def run(config_name: str = "small", repeats: int = 30, variants=VARIANTS,
        dtypes=("float32", "bfloat16")) -> dict:
  cfg = bench_train.load_config(config_name).model.lm
  shapes = lm_shapes(cfg)
  bw = common.read_bandwidth()
  calls, nbytes, ref = {}, {}, {}
  for dt in dtypes:
    for v in variants:
      fn, nbytes[v, dt] = make_chain(v, shapes, jnp.dtype(dt))
      ref[v, dt] = np.asarray(common.jax_sync(fn()))     # compiles
      calls[v, dt] = fn
  for dt in dtypes:   # every variant computes the same thing
    for v in variants:
      np.testing.assert_allclose(ref[v, dt], ref["dot", dt], rtol=2e-2, atol=2e-2)
  samples = {k: [] for k in calls}
  for _ in range(repeats):
    for k, fn in calls.items():
      t0 = time.perf_counter()
      common.jax_sync(fn())
      samples[k].append(time.perf_counter() - t0)
  bw_after = common.read_bandwidth()
  rows = {}
  for (v, dt), s in samples.items():
    t = float(np.median(s))
    rows[f"{v}/{dt}"] = dict(ms=t * 1e3, weight_bytes=nbytes[v, dt],
                             gb_per_s=nbytes[v, dt] / t / 1e9,
                             of_bandwidth=nbytes[v, dt] / t / max(bw, bw_after))
  return dict(config=config_name, machine=common.machine_name(), cpu_model=common.cpu_model(),
              bandwidth_gb_per_s=[bw / 1e9, bw_after / 1e9], repeats=repeats, variants=rows)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--config", default="small")
  p.add_argument("--repeats", type=int, default=30)
  p.add_argument("--variants", default=",".join(VARIANTS))
  p.add_argument("--out", default=None, help="JSON file (and .md beside it)")
  a = p.parse_args(argv)
  res = run(a.config, a.repeats, tuple(a.variants.split(",")))
  lines = [f"# 1-row matmul variants, LM of `{a.config}` ({res['machine']}, {res['cpu_model']})\n",
           "read bandwidth (jitted sum over 512 MB, before/after): "
           + " / ".join(f"{b:.1f}" for b in res["bandwidth_gb_per_s"]) + " GB/s\n",
           "| variant | weights MB | ms per call | GB/s | ÷ bandwidth |", "|---|---|---|---|---|"]
  for k, r in res["variants"].items():
    lines.append(f"| {k} | {r['weight_bytes'] / 1e6:.0f} | {r['ms']:.2f} | {r['gb_per_s']:.1f} | "
                 f"{r['of_bandwidth']:.2f} |")
  print("\n".join(lines))
  if a.out:
    out = pathlib.Path(a.out)
    out.write_text(json.dumps(res, indent=1) + "\n")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
