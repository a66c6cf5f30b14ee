"""The PyTorch reference of the benchmarks (HF SigLIP towers + our connector
in torch + HF Qwen2, loaded from our exported weights) computes what our
model computes: same logits, loss and greedy tokens — so the speed
comparison in ``benchmarks/`` is apples to apples. The export is also
checked against our own importers (exact round trip)."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import tiny
from facetrack_jax import sharding
from facetrack_jax.convert.safetensors_io import materialize
from facetrack_jax.generate import generate
from facetrack_jax.models.facetrack import FaceTrackMM, num_visual_tokens

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from benchmarks import common, torch_reference as tr  # noqa: E402  (needs torch)

# "attn_tied": the small config's choices (face crops attention-pooled, tied
# head, two towers); "avg_untied_shared": the others (average-pooled faces,
# untied head, faces through the frame tower). Global frames are always
# average-pooled.
CASES = {"attn_tied": dict(face_pool="attn"),
         "avg_untied_shared": dict(face_pool="avg", tie_embeddings=False, shared_towers=True)}


def _model_cfg(face_pool="avg", tie_embeddings=True, shared_towers=False):
  m = tiny.get_model_config()
  m.compressor.face_pool = face_pool
  m.lm.tie_embeddings = tie_embeddings
  m.shared_towers = shared_towers
  if shared_towers:   # 32-px faces through the 64-px tower: resample as HF does
    m.vit.posemb_resample = "bicubic"
  return m


def _random_model(cfg, seed=0):
  """Every parameter random (zero biases or unit norms would hide a dropped
  or transposed tensor); numpy draws, cheaper than the jax init."""
  rng = np.random.default_rng(seed)
  with sharding.use_mesh():
    abstract = nnx.state(nnx.eval_shape(lambda: FaceTrackMM(cfg, rngs=nnx.Rngs(0))))
  weights = {}
  for path, var in nnx.to_flat_state(abstract):
    name, shape = ".".join(map(str, path)), var.get_value().shape
    if name.endswith("scale"):
      weights[name] = rng.uniform(0.5, 1.5, shape)
    elif name.endswith(("bias", "embedding", "table", "no_face", "probe", "pos_embed")):
      weights[name] = rng.normal(0, 0.3 if name.endswith("bias") else 1.0, shape)
    else:   # kernels: fan-in scaled (the fan-in: the axes the input contracts)
      contracts_first = any(f".{p}." in name for p in ("q", "k", "v", "qkv", "gate_up"))
      fan_in = (shape[0] if contracts_first else
                shape[0] * shape[1] if len(shape) == 3 else np.prod(shape[:-1]))
      weights[name] = rng.normal(0, fan_in ** -0.5, shape)
  return materialize(lambda: FaceTrackMM(cfg, rngs=nnx.Rngs(0)), weights)


@pytest.fixture(scope="module", params=list(CASES), ids=list(CASES))
def pair(request, tmp_path_factory):
  cfg = _model_cfg(**CASES[request.param])
  model = _random_model(cfg)
  out = tr.export_hf(model, cfg, tmp_path_factory.mktemp("hf"))
  ref = tr.TorchFaceTrack(out, cfg).eval()
  return cfg, model, ref, out


@pytest.fixture(scope="module")
def batch():
  return common.random_batch(_model_cfg(), batch=2, text_len=12, seed=3)


@nnx.jit
def _logits(model, b):
  return model(b["frames"], b["faces"], b["face_mask"], b["tokens"])


def test_logits_and_loss_match(pair, batch):
  from facetrack_jax.train_step import loss_sums
  cfg, model, ref, _ = pair
  assert batch["face_mask"].any() and not batch["face_mask"].all()  # both face paths
  with sharding.use_mesh():
    ours = np.asarray(_logits(model, {k: jnp.asarray(v) for k, v in batch.items()}))
    sums = nnx.jit(loss_sums)(model, {k: jnp.asarray(v) for k, v in batch.items()})
    loss_sum, n = sums["ce"], sums["tokens"]
  tb = tr.to_torch(batch)
  with torch.no_grad():
    theirs = ref(tb["frames"], tb["faces"], tb["face_mask"], tb["tokens"])
    loss = tr.masked_ce(theirs, tb["targets"], tb["loss_mask"])
  assert ours.shape == (2, 1 + num_visual_tokens(cfg) + 12, cfg.lm.vocab_size)
  assert np.abs(ours).max() > 0.5          # logits of order 1: the bound below means something
  np.testing.assert_allclose(ours, theirs.numpy(), atol=1e-4, rtol=0)
  np.testing.assert_allclose(float(loss_sum / n), float(loss), rtol=1e-5)


def test_export_round_trips_through_our_importers(pair):
  from facetrack_jax.convert.llm import load_llm
  from facetrack_jax.convert.siglip import load_siglip_vision
  cfg, model, _, out = pair
  towers = [("vit", load_siglip_vision, cfg.vit), ("lm", load_llm, cfg.lm)]
  if cfg.shared_towers:
    assert model.face_vit is None and not (out / "face_vit").exists()
  else:
    towers.append(("face_vit", load_siglip_vision, cfg.face_vit))
  for name, load, sub_cfg in towers:
    got = nnx.to_flat_state(nnx.state(load(out / name, sub_cfg), nnx.Param))
    want = dict(nnx.to_flat_state(nnx.state(getattr(model, name), nnx.Param)))
    assert len(got) == len(want) > 0
    for path, var in got:
      np.testing.assert_array_equal(np.asarray(var[...]), np.asarray(want[path][...]),
                                    err_msg=f"{name}.{'.'.join(map(str, path))}")


@pytest.mark.parametrize("pair", ["attn_tied"], indirect=True)  # one LM is enough
def test_greedy_generation_matches_hf_generate(pair, batch):
  cfg, model, ref, _ = pair
  new = 6
  tb = tr.to_torch(batch)
  with torch.no_grad():
    x = ref.embed(tb["frames"], tb["faces"], tb["face_mask"], tb["tokens"])
    hf = ref.lm.generate(inputs_embeds=x, attention_mask=torch.ones(x.shape[:2], dtype=torch.long),
                         max_new_tokens=new, min_new_tokens=new, do_sample=False,
                         use_cache=True, eos_token_id=None, pad_token_id=0)
  with sharding.use_mesh():
    ours = generate(model.lm, jnp.asarray(x.numpy()), jnp.ones(x.shape[:2], bool),
                    max_new_tokens=new, eos_id=-1)
  assert hf.shape == (2, new)
  np.testing.assert_array_equal(np.asarray(ours), hf.numpy())


def test_mixed_precision_benchmark_runs_both_sides_in_bf16():
  """benchmarks.bench_torch with precision="bf16" (issue 19 §4): ours computes
  in bf16 over fp32 params, the reference under torch.autocast(bfloat16);
  both steps train (finite, falling torch loss) and the ratio is recorded.
  A smoke run on the tiny config, not a timing."""
  from benchmarks import bench_torch
  res = bench_torch.run("tiny", batch=8, text_len=16, repeats=1, precision="bf16")
  assert res["precision"] == "bf16" and res["torch_info"]["autocast"] == "bfloat16"
  first, last = res["torch_loss_first_last"]
  assert np.isfinite(first) and np.isfinite(last) and last < first
  assert res["speedup"] > 0 and res["jax_step"]["median_s"] > 0
  with pytest.raises(ValueError, match="precision"):
    bench_torch.build_torch_step(None, None, None, "cpu", precision="fp16")
