r"""Issue 19 §3 on CPU: how should a decode step's few-row matmuls be written
so that decoding reads the weights at the memory bandwidth, and how close
does PyTorch's own (MKL) matmul come on the same chain?

    python -m benchmarks.matvec_cpu [--config small] [--rows 1,8] [--repeats 30] [--out FILE]

One jitted call applies every matmul of the config's LM to ``rows`` rows,
layer after layer as a decode step does (q/k/v, o, gate/up, down, then the
tied LM head; no attention, no cache), so the weights (all the LM's bytes)
are read once per call and do not fit in cache. Variants of ``y[R, O] =
x[R, I] @ W[I, O]``, timed alternately, median of ``--repeats``:

* ``dot``: ``lax.dot`` of the 2-D rows (what the model does for R > 1);
* ``vec``: ``lax.dot`` of a 1-D vector (XLA's matrix-vector path; R = 1 only,
  the model's path for one fp32 row, ``models/matmul.py``);
* ``rows2`` / ``rows8``: one row padded to 2 / 8 rows (a matmul YNNPACK
  takes; R = 1 only);
* ``reduce``: ``sum(x[:, None] * W, 0)``, a fused multiply-reduce loop (R = 1 only);
* ``wT``: the weight stored transposed ``W[O, I]``, each output a contiguous
  dot product (``dot_general`` contracting both operands' minor dims);
* ``torch``: ``torch.nn.functional.linear`` on the same weights in its own
  ``[O, I]`` layout (MKL on the CPU wheel), at as many threads as cores: the
  library the decoding benchmark's HF side runs on.

Each is also run with bf16 weights (fp32 accumulation in XLA; bf16 in and out
in torch). The read bandwidth is a jitted ``sum`` over 512 MB in the same
process. Writes JSON (and prints a table): ms per call and GB/s of weights
read, ÷ the bandwidth.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import bench_train, common

VARIANTS = ("dot", "vec", "rows2", "rows8", "reduce", "wT", "torch")
ONE_ROW_ONLY = ("vec", "rows2", "rows8", "reduce")


def lm_shapes(cfg) -> list[list[tuple[int, int]]]:
  """Per layer, the (I, O) of each matmul a decode step does, then the head."""
  d, h, kv, dh, f = cfg.width, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.mlp_dim
  layer = [(d, (h + 2 * kv) * dh), (h * dh, d), (d, 2 * f), (f, d)]
  return [layer] * cfg.depth + [[(d, cfg.vocab_size)]]


def matvec(variant: str):
  """``(x float[R, I], w) -> float[R, O]``, w as the variant stores it."""
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
  if variant == "wT":   # "ri,oi->ro"
    return lambda x, w: jax.lax.dot_general(x.astype(w.dtype), w, (((1,), (1,)), ((), ())),
                                            preferred_element_type=f32)
  raise ValueError(variant)


def random_weights(shapes, seed: int = 0) -> list[np.ndarray]:
  """float32[I, O] per matmul of :func:`lm_shapes`, scaled so activations stay O(1)."""
  rng = np.random.default_rng(seed)
  return [(rng.standard_normal((i, o), np.float32) / np.sqrt(i)).astype(np.float32)
          for layer in shapes for i, o in layer]


def chain(shapes, mv, silu, tanh):
  """The decode step's matmul chain over any array library: ``fn(x, ws)``."""

  def fn(x, ws):
    it = iter(ws)
    for layer in shapes[:-1]:
      qkv = mv(x, next(it))
      o = mv(qkv[:, :layer[1][0]], next(it))
      gu = mv(x, next(it))
      f = layer[3][0]
      down = mv(silu(gu[:, :f]) * gu[:, f:], next(it))
      x = x + 0.1 * tanh(o + down)
    return mv(x, next(it))
  return fn


def make_jax(variant: str, shapes, weights, x_ri, dtype):
  """(fn() -> float[R, V], bytes of weights) for an XLA variant."""
  ws = [jnp.asarray((w.T.copy() if variant == "wT" else w).astype(dtype)) for w in weights]
  fn = jax.jit(chain(shapes, matvec(variant), jax.nn.silu, jnp.tanh))
  x = jnp.asarray(x_ri)
  return (lambda: fn(x, ws)), sum(w.nbytes for w in ws)


def make_torch(shapes, weights, x_ri, dtype: str):
  """(fn() -> float[R, V] as numpy, bytes of weights) for ``F.linear``."""
  import torch
  torch.set_num_threads(common.cores())
  tdt = getattr(torch, dtype)
  ws = [torch.from_numpy(w.T.copy()).to(tdt) for w in weights]     # [O, I], torch's layout
  F = torch.nn.functional
  fn = chain(shapes, F.linear, F.silu, torch.tanh)
  x = torch.from_numpy(x_ri).to(tdt)

  def call():
    with torch.no_grad():
      return fn(x, ws).float().numpy()
  return call, sum(w.numel() * w.element_size() for w in ws)


def run(config_name: str = "small", repeats: int = 30, variants=VARIANTS,
        dtypes=("float32", "bfloat16"), rows=(1,)) -> dict:
  cfg = bench_train.load_config(config_name).model.lm
  shapes = lm_shapes(cfg)
  weights = random_weights(shapes)
  bw = common.read_bandwidth()
  calls, nbytes, ref = {}, {}, {}
  for r in rows:
    x_ri = np.random.default_rng(1).standard_normal((r, shapes[0][0][0])).astype(np.float32)
    for dt in dtypes:
      for v in variants:
        if r > 1 and v in ONE_ROW_ONLY:
          continue
        if v == "torch":
          fn, nbytes[v, dt, r] = make_torch(shapes, weights, x_ri, dt)
        else:
          fn, nbytes[v, dt, r] = make_jax(v, shapes, weights, x_ri, jnp.dtype(dt))
        ref[v, dt, r] = np.asarray(common.jax_sync(fn()), np.float32)     # compiles
        calls[v, dt, r] = fn
  for (v, dt, r), y in ref.items():    # every variant computes the same thing
    tol = 2e-2 if dt == "float32" else 1e-1
    np.testing.assert_allclose(y, ref["dot", dt, r], rtol=tol, atol=tol,
                               err_msg=f"{v}/{dt} at {r} rows differs from dot/{dt}")
  samples = {k: [] for k in calls}
  for _ in range(repeats):
    for k, fn in calls.items():
      samples[k].append(common.time_calls(fn, warmup=0, repeats=1).median)
  bw_after = common.read_bandwidth()
  results = []
  for (v, dt, r), s in samples.items():
    t = float(np.median(s))
    results.append(dict(variant=v, dtype=dt, rows=r, ms=t * 1e3,
                        weight_bytes=nbytes[v, dt, r], gb_per_s=nbytes[v, dt, r] / t / 1e9,
                        of_bandwidth=nbytes[v, dt, r] / t / max(bw, bw_after)))
  return dict(config=config_name, machine=common.machine_name(), cpu_model=common.cpu_model(),
              threads=common.cores(), bandwidth_gb_per_s=[bw / 1e9, bw_after / 1e9],
              repeats=repeats, results=results)


def markdown(res: dict) -> list[str]:
  lines = [f"# Few-row matmul variants, LM of `{res['config']}` ({res['machine']}, "
           f"{res['cpu_model']}, {res['threads']} threads)\n",
           "read bandwidth (jitted sum over 512 MB, before/after): "
           + " / ".join(f"{b:.1f}" for b in res["bandwidth_gb_per_s"]) + " GB/s\n",
           "| rows | variant | weights MB | ms per call | GB/s | ÷ bandwidth |",
           "|---|---|---|---|---|---|"]
  for r in res["results"]:
    lines.append(f"| {r['rows']} | {r['variant']}/{r['dtype']} | {r['weight_bytes'] / 1e6:.0f} | "
                 f"{r['ms']:.2f} | {r['gb_per_s']:.1f} | {r['of_bandwidth']:.2f} |")
  return lines


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--config", default="small")
  p.add_argument("--repeats", type=int, default=30)
  p.add_argument("--rows", default="1", help="comma-separated row counts, e.g. 1,8")
  p.add_argument("--variants", default=",".join(VARIANTS))
  p.add_argument("--dtypes", default="float32,bfloat16")
  p.add_argument("--out", default=None, help="JSON file (and .md beside it)")
  a = p.parse_args(argv)
  variants = tuple(a.variants.split(","))
  unknown = sorted(set(variants) - set(VARIANTS))
  if unknown:
    p.error(f"--variants: unknown {unknown}; choose from {list(VARIANTS)}")
  try:
    rows = tuple(int(r) for r in a.rows.split(","))
  except ValueError:
    p.error(f"--rows {a.rows!r}: expected comma-separated integers, e.g. 1,8")
  if "dot" not in variants or min(rows) < 1:
    p.error("--variants must include dot (the reference the others are checked against) "
            "and --rows must be >= 1")
  res = run(a.config, a.repeats, variants, tuple(a.dtypes.split(",")), rows)
  lines = markdown(res)
  if a.out:
    return common.write_result(a.out, res, lines)
  print("\n".join(lines))
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
