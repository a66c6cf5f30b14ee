"""Item 1: the train step's achieved FLOP/s against the device's matmul peak.

    python -m benchmarks.bench_train [--config small] [--batch 8] [--text-len 64]

The step is the trainer's own (``train_step.jit_train_step``: forward,
masked cross-entropy, backward, global-norm clip, AdamW) on the ``small``
config. Model FLOPs are counted analytically (:mod:`facetrack_jax.flops`) and
cross-checked against XLA's ``cost_analysis``; the peak is a square
``jnp.dot`` measured just before and just after the step in the same
process. ``--breakdown`` also times forward + backward of each piece alone
(frame ViT, face ViT, LM), which tells where the time goes.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmarks import common
from facetrack_jax import flops

TARGET_RATIO = 0.5   # achieved model FLOP/s ÷ peak matmul FLOP/s, on CPU


def load_config(name: str):
  """``configs/<name>.py`` with the demo's ``config.train`` block."""
  from configs import tiny_synthetic
  config = importlib.import_module(f"configs.{name}").get_config()
  config.train = tiny_synthetic.get_config().train
  config.train.warmup_steps = 10
  config.model.dtype = str(common.compute_dtype())
  return config


@dataclasses.dataclass
class JaxStep:
  """A compiled train step bound to its state and one device batch."""
  config: object
  batch_np: dict
  step: Callable[[], jax.Array]     # runs one step, returns the loss (async)
  compile_s: float
  xla_flops: float | None
  params: int


def build_step(config, batch_np: dict[str, np.ndarray]) -> JaxStep:
  """Init the train state and compile ``jit_train_step`` for ``batch_np``."""
  from facetrack_jax import sharding, train_step
  mesh = sharding.make_mesh(config.mesh.shape)
  setup = train_step.make_setup(config, mesh)
  state = train_step.init_state(config, setup)
  spec = {k: v.ndim for k, v in batch_np.items()}
  shardings = train_step.batch_shardings(mesh, spec)
  batch = {k: jax.device_put(v, shardings[k]) for k, v in batch_np.items()}
  t0 = time.perf_counter()
  compiled = train_step.jit_train_step(setup, spec).lower(state, setup.rest, batch).compile()
  compile_s = time.perf_counter() - t0
  holder = {"state": state}

  def one_step():
    holder["state"], metrics = compiled(holder["state"], setup.rest, batch)  # state donated
    return metrics["loss"]

  return JaxStep(config, batch_np, one_step, compile_s, common.xla_flops(compiled),
                 int(sum(x.size for x in jax.tree.leaves(state["params"]))))


# -- per-piece forward + backward (where does the time go) ------------------------------
def _grad_fn(module, f):
  graphdef, params, rest = nnx.split(module, nnx.Param, ...)

  def loss(p, *args):
    return jnp.sum(f(nnx.merge(graphdef, p, rest), *args).astype(jnp.float32) ** 2)
  g = jax.jit(jax.grad(loss))
  return lambda *args: g(params, *args)


def breakdown(config, batch_np: dict, peak: float, repeats: int) -> dict:
  """Achieved FLOP/s of forward + backward of each tower alone (same batch)."""
  from facetrack_jax import sharding
  from facetrack_jax.models.facetrack import FaceTrackMM
  from facetrack_jax.models.vit import preprocess
  b, length = batch_np["tokens"].shape
  per = {k: 3 * b * v for k, v in flops.model_forward_parts(config.model, length).items()}
  out = {}
  with sharding.use_mesh():
    model = FaceTrackMM(config.model, rngs=nnx.Rngs(0))
    fold = lambda x: preprocess(jnp.asarray(x.reshape(-1, *x.shape[2:])), model.dtype)
    x_bld = model.lm.embed(jnp.asarray(batch_np["tokens"]))
    pos_bl = jnp.broadcast_to(jnp.arange(length), (b, length))
    pieces = {"vit": (_grad_fn(model.vit, lambda m, x: m(x)), (fold(batch_np["frames"]),)),
              "lm": (_grad_fn(model.lm, lambda m, x, p: m(x, p)[0]), (x_bld, pos_bl))}
    if model.face_vit is not None:
      pieces["face_vit"] = (_grad_fn(model.face_vit, lambda m, x: m(x)),
                            (fold(batch_np["faces"]),))
    for name, (fn, args) in pieces.items():
      t = common.time_calls(lambda: fn(*args), warmup=1, repeats=repeats)
      out[name] = dict(flops=per[name], seconds=t.median, flops_per_s=per[name] / t.median,
                       ratio_to_peak=per[name] / t.median / peak)
      common.log(f"train breakdown: {name} {t.median:.2f} s, ratio {out[name]['ratio_to_peak']:.2f}")
  return out


def summarize(js: JaxStep, timing: common.Timing, peaks: list[dict]) -> dict:
  b, length = js.batch_np["tokens"].shape
  counted = flops.train_step(js.config.model, b, length)
  peak = statistics.median([p["flops_per_s"] for p in peaks])
  achieved = counted["total"] / timing.median
  return dict(
      batch=b, seq_len=length, params=js.params, dtype=js.config.model.dtype,
      compile_s=js.compile_s, step=timing.to_json(), flops_analytic=counted,
      flops_xla=js.xla_flops,
      xla_over_analytic=None if js.xla_flops is None else js.xla_flops / counted["total"],
      achieved_flops_per_s=achieved, peaks=peaks, peak_flops_per_s=peak,
      ratio_to_peak=achieved / peak, target_ratio=TARGET_RATIO,
      examples_per_s=b / timing.median, tokens_per_s=b * length / timing.median)


def run(config_name: str = "small", batch: int = 8, text_len: int = 64, repeats: int = 5,
        with_breakdown: bool = False, js: JaxStep | None = None) -> dict:
  config = load_config(config_name)
  batch_np = common.random_batch(config.model, batch, text_len)
  common.log(f"train: peak matmul, then the {config_name} step on "
             f"{batch} x {batch_np['tokens'].shape[1]} tokens")
  peaks = [common.peak_matmul()]
  js = js or build_step(config, batch_np)
  common.log(f"train: compiled in {js.compile_s:.1f} s; timing {repeats} steps, each "
             "after a peak sample (load on a shared machine varies)")
  losses = [js.step()]                # warm-up
  common.jax_sync(losses[0])
  samples = []
  for _ in range(repeats):
    peaks.append(common.peak_matmul(repeats=3, warmup=1))
    samples += common.time_calls(lambda: losses.append(js.step()) or losses[-1],
                                 warmup=0, repeats=1).samples
  timing = common.Timing(samples)
  res = dict(config=config_name, text_len=text_len, **summarize(js, timing, peaks))
  res["loss_first_last"] = [float(losses[0]), float(losses[-1])]
  common.log(f"train: {timing.median:.2f} s/step, ratio to peak {res['ratio_to_peak']:.2f}")
  if with_breakdown:
    res["breakdown"] = breakdown(config, batch_np, res["peak_flops_per_s"], max(2, repeats // 2))
  return res


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--config", default="small")
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--text-len", type=int, default=64)
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--breakdown", action="store_true")
  args = p.parse_args(argv)
  res = run(args.config, args.batch, args.text_len, args.repeats, args.breakdown)
  print(json.dumps(res, indent=1))


if __name__ == "__main__":
  from facetrack_jax import host_memory
  host_memory.retain_freed_memory()    # CPU: keep freed buffers (module doc)
  main()
