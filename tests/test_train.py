"""Training (issue 4 §3): the loss falls, logs are written, gradient
accumulation equals the big batch, freezing keeps frozen params bit-identical
with no optimizer state, and a non-finite step stops the run without saving.

Real parts throughout: FaceTrackMM (tiny sizes), the grain pipeline over a
TFDS set built from synthetic clips, the CLI in a subprocess.
"""

import json
import math
import shutil

import jax
import numpy as np
import pytest
from flax import nnx

from facetrack_jax import (accelerators, caption_supervision, flops, input_pipeline, optim,
                           sharding, train, train_step)
from facetrack_jax.models.facetrack import num_visual_tokens
from facetrack_jax.tokenizer import Tokenizer
from tests import train_helpers as th


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  return th.tiny_data(tmp_path_factory)


def test_loss_falls_below_half_and_logs_are_written(tmp_path_factory):
  workdir, losses = th.reference_run(tmp_path_factory)
  assert sorted(losses) == list(range(1, th.STEPS + 1))
  first, last = losses[1], np.mean([losses[s] for s in range(th.STEPS - 2, th.STEPS + 1)])
  print(f"loss {first:.3f} -> {last:.3f}")
  assert last < 0.5 * first, losses
  rec = th.records(workdir)[-1]
  # No "mfu" on a CPU: its peak is not in facetrack_jax/accelerators.py.
  assert set(rec) == {"step", "loss", "lr", "grad_norm", "tokens_per_s", "examples_per_s",
                      "model_tflops_per_s_per_device"}
  assert rec["tokens_per_s"] > 0 and rec["examples_per_s"] > 0 and rec["grad_norm"] > 0
  # flops.train_step's count of the step (8 examples × the padded length), ÷ 8 devices
  config = th.make_config(th.overrides(th.tiny_data(tmp_path_factory)))
  length = round(rec["tokens_per_s"] / rec["examples_per_s"])
  assert length == config.data.max_len
  step_flops = flops.train_step(config.model, 8, length)["total"]
  assert math.isclose(rec["model_tflops_per_s_per_device"],
                      step_flops / 8 * rec["examples_per_s"] / 8 / 1e12, rel_tol=1e-6)
  # warm-up 2 steps to 1e-2, cosine to 10% at the end
  assert math.isclose(th.records(workdir)[1]["lr"], 1e-2, rel_tol=1e-6)
  assert math.isclose(rec["lr"], 1e-3, rel_tol=1e-5)
  assert list((workdir / "tb").glob("events.out.tfevents.*"))
  assert th.committed_steps(workdir) == [3, 6, 9, 12, 15, 18, 20]


def test_a_profiled_window_is_traced_for_tensorboard_and_changes_no_number(tmp_path_factory,
                                                                            tmp_path):
  data = th.tiny_data(tmp_path_factory)
  _, ref = th.reference_run(tmp_path_factory)
  workdir = th.reference_copy(tmp_path_factory, tmp_path / "w", last_step=15)
  p = th.run(workdir, data, th.overrides(data, train__profile_start_step=16,
                                         train__profile_num_steps=2))
  assert p.returncode == 0, p.stderr[-4000:]
  th.assert_losses_equal(workdir, ref)
  traces = list((workdir / "tb" / "plugins" / "profile").glob("*/*.xplane.pb"))
  assert len(traces) == 1, traces
  assert b"jit_step" in traces[0].read_bytes()    # the train step ran inside the window
  assert "profiling steps 17-18" in p.stderr


def test_the_held_out_loss_is_every_test_example_s_caption_loss(tmp_path_factory, tmp_path):
  """Resumed at step 15 with ``eval_every=2``: ``eval_loss`` is logged at 16, 18 and
  the last step (20) only, the training losses stay bit-identical, and at step 20 it
  equals the caption cross-entropy of the test split computed here from the
  checkpoint's full logits (the split's one clip sits in a batch of 8 with 7 padding
  rows, which must count for nothing)."""
  data = th.tiny_data(tmp_path_factory)
  _, ref = th.reference_run(tmp_path_factory)
  workdir = th.reference_copy(tmp_path_factory, tmp_path / "w", last_step=15)
  o = th.overrides(data, train__eval_every=2)
  p = th.run(workdir, data, o)
  assert p.returncode == 0, p.stderr[-4000:]
  th.assert_losses_equal(workdir, ref)
  evals = {r["step"]: r["eval_loss"] for r in th.records(workdir) if "eval_loss" in r}
  assert sorted(evals) == [16, 18, 20], evals

  from facetrack_jax import evaluate
  config = th.make_config(o)
  tok = Tokenizer(data["tokenizer"])
  mesh = sharding.mesh_from_config(config.mesh)
  model, _ = evaluate.load_model(config, workdir, mesh, step=20)
  ce, n = 0.0, 0.0
  for b in input_pipeline.make_eval_batches(config, tok, "test"):
    with sharding.use_mesh(mesh):
      logits = np.asarray(model(b["frames"], b["faces"], b["face_mask"], b["tokens"]),
                           np.float64)
    logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)
                           ) - logits.max(-1, keepdims=True)
    nll = -np.take_along_axis(logp, b["targets"][..., None], -1)[..., 0]
    ce, n = ce + float((nll * b["loss_mask"]).sum()), n + float(b["loss_mask"].sum())
  assert n > 0 and math.isclose(evals[20], ce / n, rel_tol=1e-4), (evals[20], ce / n)


@pytest.mark.parametrize("field, value, message", [
    ("profile_start_step", -1, "profile_start_step must be >= 0"),
    ("profile_num_steps", 0, "profile_num_steps must be >= 1"),
    ("eval_every", -1, "eval_every must be >= 0"),
])
def test_a_bad_profile_window_or_eval_interval_is_refused_before_training(data, tmp_path, field, value, message):
  o = th.overrides(data, train__profile_start_step=5)
  o[f"train.{field}"] = value
  with pytest.raises(ValueError, match=message):
    train.train(th.make_config(o), str(tmp_path / "w"))
  assert not (tmp_path / "w" / "checkpoints").exists()


@pytest.mark.parametrize("kind, name", [
    ("TPU v5 lite", "v5e"), ("TPU v5", "v5p"), ("TPU v5p", "v5p"), ("TPU v6 lite", "v6e"),
    ("NVIDIA H100 80GB HBM3", "h100"), ("NVIDIA H200", "h200"),
    ("NVIDIA A100-SXM4-40GB", "a100"), ("NVIDIA A100 80GB PCIe", "a100"),
    ("NVIDIA H100 PCIe", None), ("NVIDIA H200 NVL", None), ("TPU v4", None), ("cpu", None),
    ("NVIDIA GeForce RTX 4090", None),
])
def test_the_mfu_peak_is_known_only_for_chips_in_the_table(kind, name):
  acc = accelerators.for_device_kind(kind)
  assert (acc.name if acc else None) == name


def _one_batch(config, mesh):
  tok = Tokenizer(config.data.tokenizer)
  batch_np = next(input_pipeline.make_train_iterator(config, tok))
  with sharding.use_mesh(mesh):
    return input_pipeline.to_global(batch_np, mesh)


def _run_steps(config, mesh, batch, steps=1):
  setup = train_step.make_setup(config, mesh)
  state = train_step.init_state(config, setup)
  init = jax.device_get(state["params"])
  with sharding.use_mesh(mesh):
    fn = train_step.jit_train_step(setup, {k: v.ndim for k, v in batch.items()})
    for _ in range(steps):
      state, metrics = fn(state, setup.rest, batch)
  return setup, init, state, jax.device_get(metrics)


HEAD_OVERRIDES = {
    "event": dict(model__event_head=True, train__event_loss_weight=1.0),
    "face_event": dict(model__face_event_head=True, train__face_event_loss_weight=1.0),
    "attribute": dict(model__attribute_head=True, train__attribute_loss_weight=1.0),
    "face_attribute": dict(model__face_attribute_head=True,
                           train__face_attribute_loss_weight=1.0),
}


def _with_heads(heads):
  return {k: v for h in heads for k, v in HEAD_OVERRIDES[h].items()}


@pytest.mark.parametrize("heads", [(), ("event",),
                                   ("event", "face_event", "attribute", "face_attribute")])
def test_grad_accumulation_gives_the_big_batch_gradient(data, heads):
  """The train step's gradient (train_step.make_grad_fn) with 2 micro-batches
  equals the one-batch gradient: Σ of token-summed grads / total tokens, and
  with the training heads' losses (caption_supervision.py) too."""
  config = th.make_config(th.overrides(data, mesh__shape=(2, 2, 2), **_with_heads(heads)))
  mesh = sharding.make_mesh((2, 2, 2))
  batch = _one_batch(config, mesh)
  assert {k for k in batch if k.endswith("_targets")} == {
      caption_supervision.targets_key(h) for h in heads}
  # what the dry run's abstract batch declares for them (caption_supervision.target_fields)
  for k, (dtype, shape) in caption_supervision.target_fields(heads).items():
    assert (batch[k].dtype, batch[k].shape[1:]) == (np.dtype(dtype), shape), k
  setup = train_step.make_setup(config, mesh)
  params = train_step.init_state(config, setup)["params"]
  weights = {h: 1.0 for h in heads}
  out, aux = {}, {}
  with sharding.use_mesh(mesh):
    for k in (1, 2):
      sums, grads = jax.jit(train_step.make_grad_fn(setup, k, weights))(
          params, setup.rest, batch)
      n_tok = sums["tokens"]
      out[k] = jax.device_get((sums["ce"] / n_tok, jax.tree.map(lambda g: g / n_tok, grads)))
      aux[k] = {h: float(sums[h]) for h in heads}
  for h in heads:
    assert aux[1][h] > 0 and math.isclose(aux[1][h], aux[2][h], rel_tol=1e-5), (h, aux)
  (loss1, g1), (loss2, g2) = out[1], out[2]
  scale = max(jax.tree.leaves(jax.tree.map(lambda a: float(np.abs(a).max()), g1)))
  diff = max(jax.tree.leaves(jax.tree.map(lambda a, b: float(np.abs(a - b).max()), g1, g2)))
  print(f"loss {loss1} vs {loss2}; max |grad| {scale:.2e}, max |Δgrad| {diff:.2e}")
  assert scale > 0
  assert diff <= 1e-5 * scale
  assert math.isclose(loss1, loss2, rel_tol=1e-6)


def test_logits_at_the_loss_positions_give_the_full_loss_and_gradients(data):
  """config.train.logits_at="loss" (the LM head only at the gathered text
  positions, train_step.loss_sums) gives the loss and gradients of the head
  over every position ("all"), fp32, on the (2, 2, 2) mesh; the gather keeps
  every loss position (the token counts agree) and fewer positions than L."""
  out = {}
  mesh = sharding.make_mesh((2, 2, 2))
  for at in ("all", "loss"):
    config = th.make_config(th.overrides(data, mesh__shape=(2, 2, 2), train__logits_at=at))
    batch = _one_batch(config, mesh)
    setup = train_step.make_setup(config, mesh)
    params = train_step.init_state(config, setup)["params"]
    with sharding.use_mesh(mesh):
      sums, grads = jax.jit(train_step.make_grad_fn(setup))(params, setup.rest, batch)
    out[at] = jax.device_get((sums, grads))
  length = batch["tokens"].shape[1]
  assert 0 < length - num_visual_tokens(config.model) < length
  (s_all, g_all), (s_loss, g_loss) = out["all"], out["loss"]
  assert float(s_all["tokens"]) == float(s_loss["tokens"]) > 0
  loss_all, loss_loss = (float(s["ce"] / s["tokens"]) for s in (s_all, s_loss))
  scale = max(jax.tree.leaves(jax.tree.map(lambda a: float(np.abs(a).max()), g_all)))
  diff = max(jax.tree.leaves(jax.tree.map(lambda a, b: float(np.abs(a - b).max()), g_all, g_loss)))
  print(f"loss {loss_all} vs {loss_loss}; max |grad| {scale:.2e}, max |Δgrad| {diff:.2e}")
  assert abs(loss_all - loss_loss) <= 1e-6 * abs(loss_all)
  assert scale > 0 and diff <= 1e-5 * scale


def test_a_bad_logits_at_is_a_clear_error(data):
  config = th.make_config(th.overrides(data, mesh__shape=(8, 1, 1), train__logits_at="some"))
  mesh = sharding.make_mesh((8, 1, 1))
  batch = _one_batch(config, mesh)
  setup = train_step.make_setup(config, mesh)
  params = train_step.init_state(config, setup)["params"]
  with sharding.use_mesh(mesh), pytest.raises(ValueError, match="logits_at.*'some'"):
    jax.jit(train_step.make_grad_fn(setup))(params, setup.rest, batch)


@pytest.mark.parametrize("head", ["event", "face_event", "attribute", "face_attribute"])
def test_head_loss_trains_the_face_tower(data, head):
  """With config.train.<head>_loss_weight the step also fits the captions'
  events (event_supervision.py) or the main character's appearance
  (attribute_supervision.py): on one repeated batch that loss falls below
  half its start, and the gradient reaches the face tower."""
  config = th.make_config(th.overrides(data, mesh__shape=(8, 1, 1), **HEAD_OVERRIDES[head]))
  mesh = sharding.make_mesh((8, 1, 1))
  batch = _one_batch(config, mesh)
  targets = np.asarray(batch[caption_supervision.targets_key(head)])
  assert (targets.sum() > 0) if "attribute" not in head else (targets >= 0).mean() > 0.5
  setup = train_step.make_setup(config, mesh)
  state = train_step.init_state(config, setup)
  before = jax.device_get(state["params"]["face_vit"])
  losses = []
  with sharding.use_mesh(mesh):
    fn = train_step.jit_train_step(setup, {k: v.ndim for k, v in batch.items()},
                                   aux_weights={head: 1.0})
    for _ in range(25):
      state, m = fn(state, setup.rest, batch)
      losses.append(float(m[f"{head}_loss"]))
  print(f"{head} loss {losses[0]:.4f} -> {losses[-1]:.4f}")
  assert losses[-1] < 0.5 * losses[0], losses
  after = jax.device_get(state["params"]["face_vit"])
  moved = jax.tree.leaves(jax.tree.map(lambda a, b: float(np.abs(a - b).max()), before, after))
  assert max(moved) > 0


@pytest.mark.parametrize("head", ["event", "face_event", "attribute", "face_attribute"])
def test_a_head_loss_without_the_head_is_refused(data, tmp_path, head):
  from facetrack_jax import train
  config = th.make_config(th.overrides(data, **{f"train__{head}_loss_weight": 1.0}))
  with pytest.raises(ValueError, match=f"{head}_head"):
    train.train(config, str(tmp_path / "w"))


def test_face_tower_grad_scales_the_caption_loss_at_the_face_tower(data, tmp_path):
  """model.face_tower_grad=0: the caption loss's gradient on the face tower
  is exactly zero (it still reaches the face stream after it), the face
  event loss's is not; at 0.25 it is a quarter of the gradient at 1 (the
  forward pass is the same). At 0 without a face event loss the setting is
  refused (the tower would never train)."""
  from facetrack_jax import train
  mesh = sharding.make_mesh((8, 1, 1))
  grads = {}
  for mode in (1.0, 0.25, 0.0):
    config = th.make_config(th.overrides(data, mesh__shape=(8, 1, 1), model__face_tower_grad=mode,
                                         **HEAD_OVERRIDES["face_event"]))
    batch = _one_batch(config, mesh)
    setup = train_step.make_setup(config, mesh)
    params = train_step.init_state(config, setup)["params"]
    with sharding.use_mesh(mesh):
      for weights in ({}, {"face_event": 1.0}):
        _, g = jax.jit(train_step.make_grad_fn(setup, 1, weights))(params, setup.rest, batch)
        g = jax.device_get(g)
        grads[mode, tuple(weights)] = {
            part: max(float(np.abs(x).max()) for x in jax.tree.leaves(g[part]))
            for part in ("face_vit", "face_stream")}
  print(grads)
  assert grads[0.0, ()]["face_vit"] == 0.0 and grads[0.0, ()]["face_stream"] > 0
  assert grads[0.0, ("face_event",)]["face_vit"] > 0
  assert grads[1.0, ()]["face_vit"] > 0
  assert math.isclose(grads[0.25, ()]["face_vit"], 0.25 * grads[1.0, ()]["face_vit"], rel_tol=1e-3)
  assert grads[0.25, ()]["face_stream"] == grads[1.0, ()]["face_stream"]
  config = th.make_config(th.overrides(data, model__face_tower_grad=0.0))
  with pytest.raises(ValueError, match="face_event_loss_weight"):
    train.train(config, str(tmp_path / "w"))


STAGE1 = ("global_stream", "face_stream", "time_embedding")


def test_freezing_keeps_frozen_params_bit_identical_without_optimizer_state(data):
  """Stage 1 (projectors only) in bf16: the towers and the LM do not move and
  have no Adam moments."""
  # bf16 compute, fp32 master weights.
  config = th.make_config(th.overrides(data, mesh__shape=(2, 2, 2), train__trainable=STAGE1,
                                       model__dtype="bfloat16"))
  mesh = sharding.make_mesh((2, 2, 2))
  batch = _one_batch(config, mesh)
  setup, init, state, metrics = _run_steps(config, mesh, batch, steps=2)
  after = jax.device_get(state["params"])
  assert math.isfinite(metrics["loss"]) and metrics["loss"] > 0
  assert {x.dtype for x in jax.tree.leaves(after)} == {np.dtype("float32")}
  flat = lambda t: {optim.path_str(p): v for p, v in jax.tree_util.tree_flatten_with_path(t)[0]}
  labels, init, after = flat(setup.labels), flat(init), flat(after)
  frozen = [k for k, l in labels.items() if l == optim.FROZEN]
  trained = [k for k, l in labels.items() if l == optim.TRAINABLE]
  assert {k.split(".")[0] for k in trained} == set(STAGE1)
  assert {k.split(".")[0] for k in frozen} == {"vit", "face_vit", "lm"}
  for k in frozen:
    assert init[k].tobytes() == after[k].tobytes(), f"frozen param {k} changed"
  assert sum(not np.array_equal(init[k], after[k]) for k in trained) >= len(trained) // 2
  # Adam moments exist for trainable params only: frozen leaves hold no arrays.
  opt_paths = [optim.path_str(p) for p, x in
               jax.tree_util.tree_flatten_with_path(state["opt_state"])[0] if x.ndim > 0]
  assert len(opt_paths) == 2 * len(trained)  # mu and nu
  assert not [p for p in opt_paths if any(p.endswith(k) for k in frozen)]
  with pytest.raises(ValueError, match=r"\['encoder'\] match no parameter"):
    optim.param_labels(setup.abstract_state["params"], ("lm", "encoder"))


def test_non_finite_step_stops_with_the_step_and_keeps_last_good_checkpoint(
    tmp_path_factory, tmp_path):
  ref_dir, ref_losses = th.reference_run(tmp_path_factory)
  data = th.tiny_data(tmp_path_factory)
  shutil.copytree(ref_dir, tmp_path / "w")
  w = tmp_path / "w"
  for s in th.committed_steps(w):
    if s > 6:
      shutil.rmtree(w / "checkpoints" / str(s))
  # Resume at 6 with an absurd learning rate, checkpointing every step.
  p = th.run(w, data, th.overrides(data, train__learning_rate=1e30,
                                   train__checkpoint_every=1))
  assert p.returncode == 1, p.stderr[-3000:]
  logged = th.losses(w)
  bad = max(logged) + 1
  assert max(logged) >= 7 and logged[7] == ref_losses[7]  # same state and batch at step 7
  assert f"error: step {bad}: non-finite" in p.stderr, p.stderr[-3000:]
  assert f"Last good checkpoint: step {bad - 1}" in p.stderr
  assert th.committed_steps(w) == [3, 6] + list(range(7, bad))
  assert not (w / "checkpoints" / str(bad)).exists()
  print(json.dumps({"stopped_at": bad, "message": p.stderr.strip().splitlines()[-1]}))


def test_init_from_safetensors_checkpoints(data, tmp_path):
  """config.init.{vit, face_vit, lm}: tiny HF SigLIP / Qwen2 checkpoints
  replace those towers at init, on the mesh's shardings (the importers'
  own tests check them against HF outputs)."""
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  from facetrack_jax import train
  torch.manual_seed(0)
  config = th.make_config(th.overrides(data, mesh__shape=(2, 2, 2)))
  m = config.model
  for name, vcfg in (("vit", m.vit), ("face_vit", m.face_vit)):
    transformers.SiglipVisionModel(transformers.SiglipVisionConfig(
        hidden_size=vcfg.width, intermediate_size=vcfg.mlp_dim, num_hidden_layers=vcfg.depth,
        num_attention_heads=vcfg.num_heads, image_size=vcfg.image_size,
        patch_size=vcfg.patch_size, layer_norm_eps=vcfg.layernorm_eps,
        vision_use_head=False)).save_pretrained(tmp_path / name)
    config.init[name] = str(tmp_path / name)
  lm = m.lm
  transformers.Qwen2ForCausalLM(transformers.Qwen2Config(
      vocab_size=lm.vocab_size, hidden_size=lm.width, num_hidden_layers=lm.depth,
      num_attention_heads=lm.num_heads, num_key_value_heads=lm.num_kv_heads,
      intermediate_size=lm.mlp_dim, rms_norm_eps=lm.rms_eps, tie_word_embeddings=True,
      max_position_embeddings=lm.max_len)).save_pretrained(tmp_path / "lm")
  config.init.lm = str(tmp_path / "lm")

  mesh = sharding.make_mesh((2, 2, 2))
  setup = train_step.make_setup(config, mesh)
  params = train_step.init_state(config, setup, params_override=train.imported_params(
      config, mesh))["params"]
  from facetrack_jax.convert.llm import load_llm
  from facetrack_jax.convert.safetensors_io import read_safetensors
  from facetrack_jax.convert.siglip import load_siglip_vision
  np.testing.assert_array_equal(np.asarray(params["lm"]["embedding"]),
                                read_safetensors(tmp_path / "lm")["model.embed_tokens.weight"])
  for name, load, cfg in (("vit", load_siglip_vision, m.vit),
                          ("face_vit", load_siglip_vision, m.face_vit), ("lm", load_llm, m.lm)):
    want = nnx.to_pure_dict(nnx.state(load(tmp_path / name, cfg), nnx.Param))
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(params[name]), jax.device_get(want))
  for a, want in zip(jax.tree.leaves(params), jax.tree.leaves(setup.abstract_state["params"])):
    assert a.sharding == want.sharding
  config.init.lm = str(tmp_path / "vit")
  with pytest.raises(ValueError, match=r"config.init.lm=.*vit: cannot import .*embed_tokens"):
    train.imported_params(config, mesh)(params)
