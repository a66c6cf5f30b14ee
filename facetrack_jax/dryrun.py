r"""AOT dry run: the real train (and decode) step compiled for a mesh of fake
CPU devices, without materialising a single parameter.

    python -m facetrack_jax.dryrun --config configs/paper.py --devices 256 \
        --mesh data=1,fsdp=256,tensor=1 [--config.model.remat=full ...] \
        [--step train|decode|both] [--accelerator v5e] [--batch 256] [--out F.json]

The model, optimizer state and batch exist only as ``ShapeDtypeStruct``s
carrying the shardings the rule table gives on the mesh; the trainer's own
jitted step (``train_step.jit_train_step``) and the generator's one-token
decode step are lowered and compiled. Linear layers trace as plain
``dot_general`` (what GPU/TPU run; :func:`models.matmul.accelerator_dots`).
Reported per device: parameter / optimizer / gradient bytes against the
analytic count ÷ shard count; XLA's ``memory_analysis()`` (arguments,
outputs, temporaries, aliasing) and a peak estimate; XLA's
``cost_analysis()`` FLOPs beside the analytic model FLOPs; every collective
by kind with its count and bytes (:mod:`facetrack_jax.hlo_stats`); lowering
and compile seconds; with ``--accelerator``, fits / does not fit and a lower
bound on the step time (:mod:`facetrack_jax.accelerators`).

This compiles for CPU, not for a TPU or GPU: read the ``caveats`` it prints.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

from absl import app, flags
from ml_collections import config_flags

CAVEATS = (
    "Compiled by XLA:CPU for fake CPU devices, not by the TPU/GPU compiler: fusion, layouts, "
    "scheduling and so temporaries and the peak differ from a real compile (indicative only).",
    "XLA:CPU forms no reduce-scatter: FSDP gradients show as all-reduce (+ slice), twice the "
    "link bytes of the reduce-scatter a TPU/GPU compile would use.",
    "XLA:CPU runs bf16 collectives in f32: with bf16 compute the parameter all-gathers (and "
    "the gathered weights among the temporaries) are twice what a TPU/GPU compile moves.",
    "Collective counts and bytes are the SPMD partitioner's choices for this mesh; bytes are "
    "per device, per step, ring algorithms.",
    "XLA's cost_analysis() counts a while-loop body once: with scanned layers its FLOPs "
    "cover one layer per stack (compare the analytic model FLOPs, or scan_layers=False).",
    "The step-time figure is a lower bound (peak FLOP/s, full overlap), not a prediction.",
)


def parse_mesh(text: str) -> tuple[int, int, int]:
  """``"data=2,fsdp=-1,tensor=4"`` -> (2, -1, 4); absent axes are 1."""
  from facetrack_jax.sharding import MESH_AXES
  sizes = dict.fromkeys(MESH_AXES, 1)
  for part in filter(None, (p.strip() for p in text.split(","))):
    name, sep, value = part.partition("=")
    if not sep or name not in sizes:
      raise ValueError(f"--mesh {text!r}: expected name=size with names {MESH_AXES}")
    try:
      sizes[name] = int(value)
    except ValueError:
      raise ValueError(f"--mesh {text!r}: size of {name!r} is not an int: {value!r}") from None
  return tuple(sizes[a] for a in MESH_AXES)


def _per_device_bytes(tree) -> float:
  import jax
  return float(sum(math.prod(x.sharding.shard_shape(x.shape)) * x.dtype.itemsize
                   for x in jax.tree.leaves(tree)))


def _total_bytes(tree) -> float:
  import jax
  return float(sum(math.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(tree)))


def _memory(compiled) -> dict:
  m = compiled.memory_analysis()
  out = dict(arguments=m.argument_size_in_bytes, outputs=m.output_size_in_bytes,
             aliased=m.alias_size_in_bytes, temporaries=m.temp_size_in_bytes,
             generated_code=m.generated_code_size_in_bytes)
  out["peak_estimate"] = out["arguments"] + out["outputs"] - out["aliased"] + out["temporaries"]
  return out


def _xla_flops(compiled) -> float | None:
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost["flops"]) if cost and "flops" in cost else None


def _compile(fn, *args) -> tuple[object, dict]:
  t0 = time.perf_counter()
  lowered = fn.lower(*args)
  t1 = time.perf_counter()
  compiled = lowered.compile()
  t2 = time.perf_counter()
  return compiled, dict(lower_s=t1 - t0, compile_s=t2 - t1)


def abstract_batch(config, mesh, batch: int) -> dict:
  """The train batch as ShapeDtypeStructs sharded like ``input_pipeline.to_global``."""
  import jax
  import jax.numpy as jnp
  from facetrack_jax import caption_supervision, train_step
  m, length = config.model, config.data.max_len
  t = m.num_frames
  fields = dict(frames=(jnp.uint8, (batch, t, m.frame_size, m.frame_size, 3)),
                faces=(jnp.uint8, (batch, t, m.face_size, m.face_size, 3)),
                face_mask=(jnp.bool_, (batch, t)), tokens=(jnp.int32, (batch, length)),
                targets=(jnp.int32, (batch, length)), loss_mask=(jnp.float32, (batch, length)))
  for k, (dtype, shape) in caption_supervision.target_fields(
      caption_supervision.weights(config)).items():   # the training heads' targets
    fields[k] = (jnp.dtype(dtype), (batch, *shape))
  shardings = train_step.batch_shardings(mesh, {k: len(s) for k, (_, s) in fields.items()})
  return {k: jax.ShapeDtypeStruct(s, d, sharding=shardings[k]) for k, (d, s) in fields.items()}


def analytic_activations(config, batch_per_device: float) -> dict:
  """A floor for the train step's live activations per device (bytes): what
  the chosen remat keeps between forward and backward for a scanned stack,
  plus the fp32 logits and their gradient. Recompute buffers, one layer's
  gathered weights and XLA's own copies come on top."""
  import jax.numpy as jnp
  m = config.model
  act = jnp.dtype(m.dtype).itemsize
  b, length, t = batch_per_device, config.data.max_len, m.num_frames
  lm, vit = m.lm, m.vit
  n_img = (m.frame_size // vit.patch_size) ** 2
  face_cfg = vit if m.shared_towers else m.face_vit
  n_face = (m.face_size // face_cfg.patch_size) ** 2 if m.compressor.face_tokens else 0
  layer_inputs = b * act * (lm.depth * length * lm.width + vit.depth * t * n_img * vit.width
                            + (face_cfg.depth * t * n_face * face_cfg.width))
  logits = 2 * b * length * lm.vocab_size * 4        # fp32 logits and their gradient
  return dict(layer_inputs=layer_inputs, logits_and_grad=logits, total=layer_inputs + logits,
              note="per device; layer inputs are all that full remat keeps per layer")


def train_report(config, mesh, batch: int) -> dict:
  import jax
  from facetrack_jax import caption_supervision, flops, hlo_stats, sharding, train_step
  from facetrack_jax.models import matmul
  setup = train_step.make_setup(config, mesh)
  state = setup.abstract_state
  data_fsdp = mesh.shape["data"] * mesh.shape["fsdp"]
  if batch % data_fsdp:
    raise ValueError(f"batch {batch} does not divide over data × fsdp = {data_fsdp} devices")
  abatch = abstract_batch(config, mesh, batch)
  weights = caption_supervision.weights(config)
  with sharding.use_mesh(mesh), matmul.accelerator_dots():
    step = train_step.jit_train_step(setup, {k: v.ndim for k, v in abatch.items()},
                                     config.train.grad_accum, weights)
    compiled, times = _compile(step, state, setup.abstract_rest, abatch)
  shards = mesh.shape["fsdp"] * mesh.shape["tensor"]     # devices one parameter is split over
  params_total = _total_bytes(state["params"])
  n_params = sum(math.prod(x.shape) for x in jax.tree.leaves(state["params"]))
  trainable = sum(_total_bytes(p) for l, p in zip(jax.tree.leaves(setup.labels),
                                                  jax.tree.leaves(state["params"]))
                  if l == "trainable")
  per_device = dict(params=_per_device_bytes(state["params"]),
                    optimizer=_per_device_bytes(state["opt_state"]),
                    gradients=trainable / shards)
  analytic = dict(params=params_total / shards, optimizer=2 * trainable / shards)
  model_flops = flops.train_step(config.model, batch, config.data.max_len)["total"]
  return dict(
      step="train", batch=batch, seq_len=config.data.max_len, num_params=n_params,
      state_bytes_per_device=per_device,
      analytic_bytes_per_device=analytic,
      params_plus_optimizer_vs_analytic=(per_device["params"] + per_device["optimizer"])
      / (analytic["params"] + analytic["optimizer"]),
      memory=_memory(compiled),
      analytic_activations=analytic_activations(config, batch / data_fsdp),
      flops=dict(model_per_device=model_flops / mesh.size, xla_per_device=_xla_flops(compiled),
                 model_total=model_flops),
      collectives=hlo_stats.collectives(compiled.as_text()), **times)


def decode_report(config, mesh, batch: int, cache_len: int) -> dict:
  """One generated token for ``batch`` rows over a cache of ``cache_len`` slots."""
  import jax
  import jax.numpy as jnp
  from flax import nnx
  from jax.sharding import NamedSharding
  from facetrack_jax import flops, hlo_stats, sharding
  from facetrack_jax.models import lm as lm_mod
  from facetrack_jax.models import matmul
  m = config.model
  make = lambda: lm_mod.LM(m.lm, dtype=m.dtype, param_dtype=m.param_dtype, rngs=nnx.Rngs(0),
                           scan_layers=m.get("scan_layers", False))
  graphdef, abs_lm = sharding.abstract_model(make, mesh)
  with sharding.use_mesh(mesh):
    cache = jax.eval_shape(lambda: nnx.merge(graphdef, abs_lm).init_cache(batch, cache_len))

  def place(x, axes):
    spec = sharding.fitted_spec(x.shape, axes, mesh)
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=NamedSharding(mesh, spec))

  kv_axes = ("layers", "batch", "act_kv_heads", "length", "head_dim")   # per layer: the last 4
  cache = lm_mod.KVCache(k=jax.tree.map(lambda x: place(x, kv_axes[-x.ndim:]), cache.k),
                         v=jax.tree.map(lambda x: place(x, kv_axes[-x.ndim:]), cache.v),
                         valid=place(cache.valid, ("batch", "length")),
                         index=place(cache.index, ()))
  token = place(jax.ShapeDtypeStruct((batch,), jnp.int32), ("batch",))

  def decode_step(state, cache, token_b):
    model = nnx.merge(graphdef, state)
    pos_b1 = jnp.broadcast_to(cache.index, (batch, 1))
    logits_b1v, cache = model(model.embed(token_b[:, None]), pos_b1, cache=cache)
    return jnp.argmax(logits_b1v[:, 0], axis=-1).astype(jnp.int32), cache

  with sharding.use_mesh(mesh), matmul.accelerator_dots():
    step = jax.jit(decode_step, donate_argnums=(1,))
    compiled, times = _compile(step, abs_lm, cache, token)
  weights = _per_device_bytes(abs_lm)
  cache_bytes = _per_device_bytes((cache.k, cache.v))
  return dict(
      step="decode", batch=batch, cache_len=cache_len,
      state_bytes_per_device=dict(params=weights, kv_cache=cache_bytes),
      memory=_memory(compiled),
      hbm_read_per_device=weights + cache_bytes,
      flops=dict(model_per_device=flops.decode_step(m.lm, batch, cache_len) / mesh.size,
                 xla_per_device=_xla_flops(compiled)),
      collectives=hlo_stats.collectives(compiled.as_text()), **times)


def _with_verdict(report: dict, accelerator: str | None) -> dict:
  from facetrack_jax import accelerators, hlo_stats
  if accelerator:
    report["verdict"] = accelerators.verdict(
        accelerators.get(accelerator), peak_bytes=report["memory"]["peak_estimate"],
        flops=report["flops"]["model_per_device"],
        link_bytes=hlo_stats.total_link_bytes(report["collectives"]),
        hbm_bytes_read=report.get("hbm_read_per_device", 0.0))
  return report


def run(config, mesh_shape, *, step: str = "both", accelerator: str | None = None,
        batch: int | None = None, decode_batch: int | None = None,
        cache_len: int | None = None) -> dict:
  """The dry-run report (a JSON-able dict) on the devices JAX already has."""
  import jax
  from facetrack_jax import sharding
  if step not in ("train", "decode", "both"):
    raise ValueError(f"--step must be train, decode or both, got {step!r}")
  mesh = sharding.make_mesh(tuple(mesh_shape))
  out = dict(config_model=config.model.to_dict(), mesh=dict(mesh.shape),
             devices=jax.device_count(), platform=jax.default_backend(),
             jax_version=jax.__version__, caveats=list(CAVEATS))
  data_fsdp = mesh.shape["data"] * mesh.shape["fsdp"]
  if step in ("train", "both"):
    out["train"] = _with_verdict(
        train_report(config, mesh, batch or config.data.batch_size), accelerator)
  if step in ("decode", "both"):
    out["decode"] = _with_verdict(
        decode_report(config, mesh, decode_batch or data_fsdp, cache_len or config.data.max_len),
        accelerator)
  return out


def summary(report: dict) -> str:
  """A few lines a person reads (the JSON holds everything)."""
  gib = lambda x: f"{x / 2**30:.2f} GiB"
  lines = [f"mesh {report['mesh']} on {report['devices']} {report['platform']} devices"]
  for key in ("train", "decode"):
    if key not in report:
      continue
    r = report[key]
    mem, coll = r["memory"], r["collectives"]
    lines.append(f"{key}: lower {r['lower_s']:.1f} s, compile {r['compile_s']:.1f} s; per device: "
                 + ", ".join(f"{k} {gib(v)}" for k, v in r["state_bytes_per_device"].items())
                 + f"; temporaries {gib(mem['temporaries'])}, peak ≈ {gib(mem['peak_estimate'])}")
    if "params_plus_optimizer_vs_analytic" in r:
      lines.append(f"  params + optimizer ÷ analytic count/shards = "
                   f"{r['params_plus_optimizer_vs_analytic']:.4f}")
    xla = r["flops"]["xla_per_device"]
    lines.append(f"  FLOPs per device: model {r['flops']['model_per_device']:.3e}, XLA "
                 + (f"{xla:.3e}" if xla else "n/a"))
    lines.append("  collectives: " + ", ".join(
        f"{k} {v['ops']} ops / {v['executed']} runs / {gib(v['link_bytes'])}"
        for k, v in coll.items() if isinstance(v, dict) and v.get("ops")))
    if "verdict" in r:
      v = r["verdict"]
      lines.append(f"  {v['accelerator']}: {'fits' if v['fits'] else 'DOES NOT FIT'} "
                   f"({v['peak_gib']:.1f} of {v['hbm_gib']:.1f} GiB); step ≥ "
                   f"{v['step_s_lower_bound'] * 1e3:.1f} ms ({v['bound_by']}-bound; {v['assumptions']})")
  lines += [f"caveat: {c}" for c in report["caveats"]]
  return "\n".join(lines)


def _define_flags() -> dict:
  """The CLI's flags (defined only when run as a program: importing this
  module from another absl program must not define a second --config)."""
  return dict(
      config=config_flags.DEFINE_config_file("config", "configs/paper.py", "model config file",
                                             lock_config=False),
      devices=flags.DEFINE_integer("devices", 8, "fake CPU devices to compile for"),
      mesh=flags.DEFINE_string("mesh", "fsdp=-1", "mesh sizes, e.g. data=2,fsdp=64,tensor=2"),
      step=flags.DEFINE_enum("step", "both", ["train", "decode", "both"], "which step to compile"),
      accelerator=flags.DEFINE_string("accelerator", None,
                                      "judge against: v5e, v5p, v6e, a100, h100, h200"),
      batch=flags.DEFINE_integer("batch", None, "global train batch (default data.batch_size)"),
      decode_batch=flags.DEFINE_integer("decode_batch", None, "decode rows (default data × fsdp)"),
      cache_len=flags.DEFINE_integer("cache_len", None, "decode cache slots (default data.max_len)"),
      out=flags.DEFINE_string("out", None, "write the JSON report here"))


def main(argv, f: dict) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  # Before JAX starts its backend: N fake devices on the CPU.
  os.environ["JAX_PLATFORMS"] = "cpu"
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                             + f" --xla_force_host_platform_device_count={f['devices'].value}")
  accelerator = f["accelerator"].value
  if accelerator:
    from facetrack_jax import accelerators
    accelerators.get(accelerator)        # a bad name fails before minutes of compiling
  report = run(f["config"].value, parse_mesh(f["mesh"].value), step=f["step"].value,
               accelerator=accelerator, batch=f["batch"].value,
               decode_batch=f["decode_batch"].value, cache_len=f["cache_len"].value)
  report["command"] = " ".join(sys.argv)
  if f["out"].value:
    os.makedirs(os.path.dirname(os.path.abspath(f["out"].value)), exist_ok=True)
    with open(f["out"].value, "w") as fh:
      json.dump(report, fh, indent=1)
  print(summary(report))


if __name__ == "__main__":
  _FLAGS = _define_flags()
  app.run(lambda argv: main(argv, _FLAGS))
