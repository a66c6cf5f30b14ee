"""Train state, its shardings, and the jitted train step (MaxText style).

The train state is a plain dict, so orbax saves and restores it as is::

    {"step": int32[], "params": {<nnx.Param pure dict>}, "opt_state": <optax state>}

Params are fp32 master weights (``config.model.param_dtype``); the model
computes in ``config.model.dtype`` (bf16 for mixed precision) and returns
fp32 logits. Non-parameter module state (buffers) is kept aside as ``rest``
and passed to the step unchanged.

Every leaf of the state carries the sharding its logical axes give on the
mesh (:func:`make_setup`); the state is created straight onto those
shardings by a jit with ``out_shardings`` — no full host copy — and the step
runs with explicit in/out shardings and donates the state.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from facetrack_jax import caption_supervision, optim, sharding

ModelFactory = Callable[[ml_collections.ConfigDict, nnx.Rngs], nnx.Module]


def default_model_factory(model_cfg, rngs):
  from facetrack_jax.models.facetrack import FaceTrackMM
  return FaceTrackMM(model_cfg, rngs=rngs)


@dataclasses.dataclass
class Setup:
  """Everything static about a training run on one mesh."""
  mesh: Mesh
  graphdef: Any
  rest: Any                 # non-Param module state (pure dict), passed through
  labels: Any               # "trainable" / "frozen" per param
  tx: optax.GradientTransformation
  schedule: optax.Schedule
  abstract_state: Any       # ShapeDtypeStructs with the mesh's shardings
  state_shardings: Any
  rest_shardings: Any
  abstract_rest: Any = None  # ShapeDtypeStructs of ``rest`` (AOT lowering: dryrun)
  logits_at: str = "loss"   # config.train.logits_at (:func:`loss_sums`)


def _split(model):
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  return graphdef, nnx.to_pure_dict(params), nnx.to_pure_dict(rest)


def make_setup(config: ml_collections.ConfigDict, mesh: Mesh,
               model_factory: ModelFactory = default_model_factory) -> Setup:
  """Builds the model abstractly on ``mesh`` (nothing is allocated) and derives
  the optimizer, the abstract train state and its shardings."""
  make = lambda: model_factory(config.model, nnx.Rngs(config.seed))
  graphdef, abs_state = sharding.abstract_model(make, mesh)
  abs_model = nnx.merge(graphdef, abs_state)
  graphdef, abs_params, abs_rest = _split(abs_model)
  labels = optim.param_labels(abs_params, config.train.trainable)
  tx = optim.make_optimizer(config.train, labels)
  replicated = NamedSharding(mesh, P())
  param_sh = jax.tree.map(lambda x: x.sharding, abs_params)
  abs_opt = jax.eval_shape(tx.init, abs_params)
  opt_sh = optim.opt_state_shardings(abs_opt, abs_params, replicated)
  shardings = {"step": replicated, "params": param_sh, "opt_state": opt_sh}
  abstract = {"step": jax.ShapeDtypeStruct((), jnp.int32),
              "params": abs_params, "opt_state": abs_opt}
  abstract = jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)
  rest_sh = jax.tree.map(lambda x: getattr(x, "sharding", None) or replicated, abs_rest)
  abs_rest = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                          abs_rest, rest_sh)
  return Setup(mesh=mesh, graphdef=graphdef, rest=None, labels=labels, tx=tx,
               schedule=optim.learning_rate_schedule(config.train),
               abstract_state=abstract, state_shardings=shardings, rest_shardings=rest_sh,
               abstract_rest=abs_rest, logits_at=config.train.get("logits_at", "loss"))


_INIT_FNS: dict = {}


def _init_compiler_options() -> dict | None:
  """The constructor runs once: on CPU, compile it without LLVM optimisation
  (the unrolled threefry of every param init made it the slowest compile of a
  tiny run: 12 s -> 6 s CPU)."""
  if jax.default_backend() == "cpu":
    return {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
  return None


def _jitted_init(config, setup: Setup, model_factory: ModelFactory):
  """The jitted constructor ``() -> (params, rest)`` on ``setup``'s shardings,
  one per (factory, model config, seed, mesh): repeated inits reuse the
  compiled executable."""
  key = (model_factory, config.model.to_json(), config.seed, setup.mesh)
  if key not in _INIT_FNS:
    def make_params_and_rest():  # traced inside use_mesh (mesh + rules active)
      _, params, rest = _split(model_factory(config.model, nnx.Rngs(config.seed)))
      return params, rest
    _INIT_FNS[key] = jax.jit(make_params_and_rest, out_shardings=(
        setup.state_shardings["params"], setup.rest_shardings),
        compiler_options=_init_compiler_options())
  return _INIT_FNS[key]


def init_state(config, setup: Setup, model_factory: ModelFactory = default_model_factory,
               params_override: Callable[[dict], dict] | None = None):
  """A fresh train state, created directly on its shardings.

  ``params_override(params) -> params`` may replace sub-trees (imported
  weights, already on their shardings) before the optimizer state is made.
  Sets ``setup.rest``. Returns the state dict.
  """
  with sharding.use_mesh(setup.mesh):
    params, rest = _jitted_init(config, setup, model_factory)()
  if params_override is not None:
    params = params_override(params)
  setup.rest = rest
  opt_state = jax.jit(setup.tx.init, out_shardings=setup.state_shardings["opt_state"])(params)
  step = jax.device_put(jnp.zeros((), jnp.int32), setup.state_shardings["step"])
  return {"step": step, "params": params, "opt_state": opt_state}


def init_rest(config, setup: Setup, model_factory: ModelFactory = default_model_factory):
  """Only the non-parameter state (after a restore, which brings the params)."""
  if not jax.tree.leaves(setup.rest_shardings):
    setup.rest = jax.tree.map(lambda x: x, setup.rest_shardings)
    return setup.rest

  def make_rest():
    return _split(model_factory(config.model, nnx.Rngs(config.seed)))[2]

  with sharding.use_mesh(setup.mesh):
    setup.rest = jax.jit(make_rest, out_shardings=setup.rest_shardings)()
  return setup.rest


# -- loss ----------------------------------------------------------------------
def loss_positions(loss_mask_bl: jax.Array, count: int) -> jax.Array:
  """int32[B, C]: each row's positions with loss (loss_mask > 0) first, in
  order, then its other positions, C = ``count`` (static). The sort is
  stable, so with ``count`` ≥ the most loss positions of any row no loss
  position is left out."""
  return jnp.argsort(loss_mask_bl <= 0, axis=1, stable=True)[:, :count].astype(jnp.int32)


def loss_sums(model, batch, aux_weights: Mapping[str, float] | None = None,
              logits_at: str = "loss") -> dict[str, jax.Array]:
  """Sums over one batch: ``ce`` (Σ masked token cross-entropy), ``tokens``
  (Σ loss_mask) and, for each training head of ``aux_weights`` with weight
  > 0 (:mod:`caption_supervision`: "event", "attribute"), its loss summed
  over the batch under the head's name.

  ``logits_at``: "loss" (the default) applies the LM head only at the text
  positions, gathered loss positions first (:func:`loss_positions`, C = L −
  visual tokens per row: visual placeholders never carry loss, so none is
  left out), which never materialises fp32 logits float[B, L, V] — at the
  paper's shapes 1,696 of 2,048 positions are visual; "all": every position
  (the reference; same loss and gradients up to summation order).

  batch: frames uint8[B,T,H,W,3], faces uint8[B,T,S,S,3], face_mask bool[B,T],
  tokens / targets int32[B,L], loss_mask float32[B,L]; with a head also its
  targets (event_targets float32[B,P,E], attribute_targets int32[B,A]).
  """
  if logits_at not in ("loss", "all"):
    raise ValueError(f"config.train.logits_at must be 'loss' or 'all', got {logits_at!r}")
  heads = tuple(caption_supervision.active(aux_weights))
  args = (batch["frames"], batch["faces"], batch["face_mask"], batch["tokens"])
  h_bld, aux_logits = model.features(*args, aux=heads)
  targets_bl, mask_bl = batch["targets"], batch["loss_mask"].astype(jnp.float32)
  if logits_at == "loss":
    count = max(1, h_bld.shape[1] - model.num_visual_tokens)
    idx_bc = loss_positions(mask_bl, count)
    h_bld = sharding.constrain(jnp.take_along_axis(h_bld, idx_bc[..., None], axis=1),
                               ("batch", "length", "act_embed"))
    targets_bl = jnp.take_along_axis(targets_bl, idx_bc, axis=1)
    mask_bl = jnp.take_along_axis(mask_bl, idx_bc, axis=1)
  ce_bl = optax.softmax_cross_entropy_with_integer_labels(
      model.lm.logits(h_bld).astype(jnp.float32), targets_bl)
  out = {"ce": jnp.sum(ce_bl * mask_bl), "tokens": jnp.sum(mask_bl)}
  for name in heads:
    out[name] = caption_supervision.HEADS[name].loss_sum(
        aux_logits[name], batch[caption_supervision.targets_key(name)])
  return out


def _microbatches(batch, k: int):
  """[B, ...] -> [k, B/k, ...]; micro-batch j takes rows j, j+k, j+2k, ...
  so that every data shard contributes equally to every micro-batch."""
  def split(x):
    b = x.shape[0]
    if b % k:
      raise ValueError(f"batch size {b} is not divisible by config.train.grad_accum={k}")
    x = x.reshape((b // k, k) + x.shape[1:]).swapaxes(0, 1)
    return sharding.constrain(x, (None, "batch") + (None,) * (x.ndim - 2))
  return jax.tree.map(split, batch)


def aux_counts(batch, heads) -> dict[str, float]:
  """Each training head's normaliser: the size of its targets in the whole
  batch (B·P·E event slots, B·A attribute slots; static)."""
  return {n: float(math.prod(batch[caption_supervision.targets_key(n)].shape)) for n in heads}


def make_grad_fn(setup: Setup, grad_accum: int = 1,
                 aux_weights: Mapping[str, float] | None = None):
  """``(params, rest, batch) -> (sums, gradient of the objective × N)`` over
  the whole global batch, N = Σ loss_mask. The objective is

      Σ CE·mask / N  +  Σ_heads weight · Σ head loss / (size of its targets)

  (heads: the ``aux_weights`` > 0, e.g. {"event": 1.0}: event BCE over
  B·P·E, attribute CE over B·A); N is read off the batch before the forward
  pass, so every micro-batch's gradient is already on the scale of the whole
  batch. With ``grad_accum`` k > 1 the batch is cut into k micro-batches (a
  ``lax.scan``) whose gradients are added up: divided once by N, that is
  exactly the big batch's gradient. ``sums`` holds the :func:`loss_sums` of
  the whole batch. Gradients stop at frozen params (no backward pass through
  a frozen tower).
  """
  graphdef, labels = setup.graphdef, setup.labels
  aux_weights = caption_supervision.active(aux_weights)

  def objective_fn(params, rest, batch, n_tok, n_aux):
    params = jax.tree.map(lambda l, p: p if l == optim.TRAINABLE else jax.lax.stop_gradient(p),
                          labels, params)
    sums = loss_sums(nnx.merge(graphdef, params, rest), batch, aux_weights, setup.logits_at)
    objective = sums["ce"]
    for name, w in aux_weights.items():
      objective = objective + w * jnp.maximum(n_tok, 1.0) / n_aux[name] * sums[name]
    return objective, sums

  grad_fn = jax.value_and_grad(objective_fn, has_aux=True)

  def fn(params, rest, batch):
    n_tok = jnp.sum(batch["loss_mask"].astype(jnp.float32))
    n_aux = aux_counts(batch, aux_weights)
    if grad_accum == 1:
      (_, sums), grads = grad_fn(params, rest, batch, n_tok, n_aux)
      return sums, grads

    def body(carry, mb):
      g_acc, s_acc = carry
      (_, s), g = grad_fn(params, rest, mb, n_tok, n_aux)
      return (jax.tree.map(jnp.add, g_acc, g), jax.tree.map(jnp.add, s_acc, s)), None

    zeros = jax.tree.map(jnp.zeros_like, params)
    zero_sums = {k: jnp.float32(0) for k in ("ce", "tokens", *aux_weights)}
    (grads, sums), _ = jax.lax.scan(body, (zeros, zero_sums), _microbatches(batch, grad_accum))
    return sums, grads

  return fn


def make_train_step(setup: Setup, grad_accum: int = 1,
                    aux_weights: Mapping[str, float] | None = None):
  """The un-jitted step ``(state, rest, batch) -> (state, metrics)``.

  loss = Σ CE·mask / Σ mask over the global batch (:func:`make_grad_fn`;
  plus the weighted training-head losses, logged apart as ``<name>_loss``,
  each a mean over its targets); then clip → AdamW on the trainable params;
  frozen params pass through.
  """
  labels, tx, schedule = setup.labels, setup.tx, setup.schedule
  trainable = lambda l: l == optim.TRAINABLE
  aux_weights = caption_supervision.active(aux_weights)
  grad_fn = make_grad_fn(setup, grad_accum, aux_weights)

  def step(state, rest, batch):
    params = state["params"]
    sums, grads = grad_fn(params, rest, batch)
    loss_sum, n_tok = sums["ce"], sums["tokens"]
    denom = jnp.maximum(n_tok, 1.0)
    grads = jax.tree.map(lambda g: g / denom, grads)
    updates, opt_state = tx.update(grads, state["opt_state"], params)
    stepped = optax.apply_updates(params, updates)
    # Frozen params are passed through untouched (bit-identical).
    new_params = jax.tree.map(lambda l, old, new: new if trainable(l) else old,
                              labels, params, stepped)
    # Checked by the loop before a state is kept: a finite loss and gradient
    # can still step into Inf (a huge learning rate).
    finite = jnp.stack([jnp.all(jnp.isfinite(p)) for l, p in
                        zip(jax.tree.leaves(labels), jax.tree.leaves(new_params))
                        if trainable(l)]).all()
    metrics = {"loss": loss_sum / denom, "grad_norm": optax.tree.norm(grads),
               "lr": schedule(state["step"]), "target_tokens": n_tok,
               "params_finite": finite}
    for name, n in aux_counts(batch, aux_weights).items():
      metrics[f"{name}_loss"] = sums[name] / n
    new_state = {"step": state["step"] + 1, "params": new_params, "opt_state": opt_state}
    return new_state, metrics

  return step


def batch_shardings(mesh: Mesh, batch_spec: dict[str, int]) -> dict[str, NamedSharding]:
  """``{field: ndim}`` -> batch axis over ("data", "fsdp"), the rest replicated."""
  return {k: sharding.named_sharding(mesh, ("batch",) + (None,) * (n - 1))
          for k, n in batch_spec.items()}


def jit_train_step(setup: Setup, batch_spec: dict[str, int], grad_accum: int = 1,
                   aux_weights: Mapping[str, float] | None = None):
  """``jax.jit`` of :func:`make_train_step` with explicit shardings; the state
  (argument 0) is donated."""
  replicated = NamedSharding(setup.mesh, P())
  return jax.jit(
      make_train_step(setup, grad_accum, aux_weights),
      in_shardings=(setup.state_shardings, setup.rest_shardings,
                    batch_shardings(setup.mesh, batch_spec)),
      out_shardings=(setup.state_shardings, replicated),
      donate_argnums=(0,))


def jit_eval_step(setup: Setup, batch_spec: dict[str, int]):
  """``jax.jit`` of ``(params, rest, batch) -> {"ce", "tokens"}``: the caption
  loss sums of one held-out batch (:func:`loss_sums`, no heads, no gradient;
  padding rows carry no loss), replicated on every device."""
  graphdef = setup.graphdef

  def step(params, rest, batch):
    sums = loss_sums(nnx.merge(graphdef, params, rest), batch, None, setup.logits_at)
    return {"ce": sums["ce"], "tokens": sums["tokens"]}

  return jax.jit(step, in_shardings=(setup.state_shardings["params"], setup.rest_shardings,
                                     batch_shardings(setup.mesh, batch_spec)),
                 out_shardings=NamedSharding(setup.mesh, P()))
