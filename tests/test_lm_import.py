"""HF Qwen2 / Llama checkpoints → our LM: same logits and hidden states.

Tiny random HF models (torch CPU, eager attention) are saved with
``save_pretrained`` and imported with ``convert.llm.load_llm``.
"""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding

from facetrack_jax import sharding
from facetrack_jax.convert import llm as convert_llm
from facetrack_jax.convert.safetensors_io import read_safetensors

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

SMALL = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             intermediate_size=128, vocab_size=256, max_position_embeddings=128,
             rms_norm_eps=1e-6, initializer_range=0.2)  # large enough that attention is not uniform


def _save(tmp_path, kind, dtype=torch.float32):
  torch.manual_seed(0)
  if kind == "qwen2":    # untied, q/k/v biases, rope theta of Qwen2
    conf = transformers.Qwen2Config(**SMALL, tie_word_embeddings=False,
                                    rope_parameters=dict(rope_type="default", rope_theta=1e6))
    model = transformers.Qwen2ForCausalLM(conf)
    with torch.no_grad():     # HF initialises biases to zero: make them matter
      for layer in model.model.layers:
        for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
          proj.bias.normal_(0, 0.5)
  else:                  # tied, no biases, head_dim set explicitly
    conf = transformers.LlamaConfig(**SMALL, tie_word_embeddings=True, head_dim=16)
    model = transformers.LlamaForCausalLM(conf)
  with torch.no_grad():       # HF norms start at 1: make them matter too
    for name, p in model.named_parameters():
      if "norm" in name:
        p.uniform_(0.5, 1.5)
  model.config._attn_implementation = "eager"
  model = model.to(dtype).eval()
  path = tmp_path / kind
  model.save_pretrained(path)
  return model, path


def _hf_outputs(model, tokens, mask=None, positions=None):
  with torch.no_grad():
    out = model(input_ids=torch.tensor(np.asarray(tokens)),
                attention_mask=None if mask is None else torch.tensor(np.asarray(mask), dtype=torch.long),
                position_ids=None if positions is None else torch.tensor(np.asarray(positions)),
                output_hidden_states=True)
  return out.logits.float().numpy(), out.hidden_states[-1].float().numpy()


@nnx.jit
def _forward(lm, tokens, positions, mask):
  h, _ = lm.backbone(lm.embed(tokens), positions, mask_bl=mask)
  return lm.logits(h), h


@pytest.mark.parametrize("kind,scan", [("qwen2", False), ("llama", False), ("qwen2", True)])
def test_logits_and_hidden_match_hf(tmp_path, kind, scan):
  model, path = _save(tmp_path, kind)
  cfg = convert_llm.lm_config_from_hf(json.loads((path / "config.json").read_text()))
  assert cfg.qkv_bias == (kind == "qwen2") and cfg.tie_embeddings == (kind == "llama")
  assert cfg.rope_theta == (1e6 if kind == "qwen2" else 1e4)
  lm = convert_llm.load_llm(path, cfg, scan_layers=scan)
  assert (lm.lm_head is None) == (kind == "llama")
  if scan:    # one stacked block: HF layer n is row n of every tensor
    qkv = np.asarray(lm.blocks.attn.qkv.kernel[...])              # [layers, D, KVH, G+2, Dh]
    w = model.model.layers[1].self_attn.q_proj.weight.detach().numpy()       # [H*Dh, D]
    np.testing.assert_array_equal(qkv[1][:, :, :2].reshape(64, -1), w.T)

  rng = np.random.default_rng(0)
  tokens = rng.integers(0, 256, (2, 12)).astype(np.int32)
  pos = np.broadcast_to(np.arange(12, dtype=np.int32), (2, 12))
  logits, hidden = _forward(lm, tokens, pos, np.ones((2, 12), bool))
  ref_logits, ref_hidden = _hf_outputs(model, tokens)
  np.testing.assert_allclose(np.asarray(logits), ref_logits, atol=1e-4, rtol=0)
  np.testing.assert_allclose(np.asarray(hidden), ref_hidden, atol=1e-4, rtol=0)

  # Left-padded batch: HF needs the positions given (it would count pads).
  mask = np.ones((2, 12), bool)
  mask[1, :5] = False
  pos = np.maximum(np.cumsum(mask, 1) - 1, 0).astype(np.int32)
  logits, hidden = _forward(lm, tokens, pos, mask)
  ref_logits, ref_hidden = _hf_outputs(model, tokens, mask, pos)
  np.testing.assert_allclose(np.asarray(logits)[mask], ref_logits[mask], atol=1e-4, rtol=0)
  np.testing.assert_allclose(np.asarray(hidden)[mask], ref_hidden[mask], atol=1e-4, rtol=0)
  # ...and the padded row's valid part equals that row alone, unpadded.
  alone, _ = _forward(lm, tokens[1:, 5:], pos[1:, 5:], mask[1:, 5:])
  np.testing.assert_allclose(np.asarray(logits)[1, 5:], np.asarray(alone)[0], atol=1e-5, rtol=0)


def test_bf16_checkpoint_loads(tmp_path):
  model, path = _save(tmp_path, "qwen2", dtype=torch.bfloat16)
  lm = convert_llm.load_llm(path, None, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
  qkv = lm.blocks[1].attn.qkv.kernel[...]              # [D, KVH=2, G+2=4, Dh]: G=2 queries, k, v
  assert qkv.dtype == jnp.bfloat16
  w = model.model.layers[1].self_attn.q_proj.weight.detach().float().numpy()      # [H*Dh, D]
  np.testing.assert_array_equal(np.asarray(qkv[:, :, :2], np.float32).reshape(64, -1), w.T)
  wk = model.model.layers[1].self_attn.k_proj.weight.detach().float().numpy()     # [KVH*Dh, D]
  np.testing.assert_array_equal(np.asarray(qkv[:, :, 2], np.float32).reshape(64, -1), wk.T)
  tokens = np.arange(10, dtype=np.int32)[None] * 7
  logits, _ = _forward(lm, tokens, np.arange(10, dtype=np.int32)[None], np.ones((1, 10), bool))
  ref_logits, _ = _hf_outputs(model, tokens)
  assert np.isfinite(np.asarray(logits)).all()
  # bf16 compute on both sides: same argmax on nearly every position.
  assert (np.asarray(logits).argmax(-1) == ref_logits.argmax(-1)).mean() >= 0.8


def _write(path, tensors):
  from safetensors.numpy import save_file
  save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path))


def test_bad_checkpoints_name_the_tensor(tmp_path):
  _, path = _save(tmp_path, "qwen2")
  cfg = convert_llm.lm_config_from_hf(json.loads((path / "config.json").read_text()))
  good = {k: np.asarray(v) for k, v in read_safetensors(path).items()}

  missing = dict(good)
  del missing["model.layers.1.mlp.up_proj.weight"]
  _write(tmp_path / "missing.safetensors", missing)
  with pytest.raises(KeyError, match=r"model\.layers\.1\.mlp\.up_proj\.weight"):
    convert_llm.load_llm(tmp_path / "missing.safetensors", cfg)

  extra = dict(good, **{"model.layers.0.mlp.extra.weight": np.zeros(3, np.float32)})
  _write(tmp_path / "extra.safetensors", extra)
  with pytest.raises(ValueError, match=r"model\.layers\.0\.mlp\.extra\.weight"):
    convert_llm.load_llm(tmp_path / "extra.safetensors", cfg)

  shaped = dict(good, **{"model.layers.0.self_attn.k_proj.bias": np.zeros(16, np.float32)})
  _write(tmp_path / "shaped.safetensors", shaped)
  with pytest.raises(ValueError, match=r"model\.layers\.0\.self_attn\.k_proj\.bias.*\(16,\)"):
    convert_llm.load_llm(tmp_path / "shaped.safetensors", cfg)

  with pytest.raises(ValueError, match="model_type 'gemma'"):
    convert_llm.lm_config_from_hf(dict(model_type="gemma"))


def test_sharded_import_matches_unsharded(tmp_path):
  _, path = _save(tmp_path, "qwen2")
  rng = np.random.default_rng(1)
  tokens = rng.integers(0, 256, (4, 8)).astype(np.int32)
  pos = np.broadcast_to(np.arange(8, dtype=np.int32), (4, 8))
  mask = np.ones((4, 8), bool)
  ref, _ = _forward(convert_llm.load_llm(path), tokens, pos, mask)

  mesh = sharding.make_mesh((2, 2, 2))
  lm = convert_llm.load_llm(path, mesh=mesh)
  n = 0
  for path_, var in nnx.to_flat_state(nnx.state(lm, nnx.Param)):
    axes = var.get_metadata()["out_sharding"]
    want = NamedSharding(mesh, sharding.logical_to_spec(axes))
    got = var[...].sharding
    assert got.is_equivalent_to(want, var[...].ndim), (path_, got, want)
    n += any(a is not None for a in want.spec)
  assert n > 10   # most parameters are actually split
  with sharding.use_mesh(mesh):
    logits, _ = _forward(lm, tokens, pos, mask)
  assert logits.sharding.spec[0] == ("data", "fsdp")
  np.testing.assert_allclose(np.asarray(logits), np.asarray(ref), atol=1e-5, rtol=0)

  # Scanned: the stacked "layers" axis leads every block tensor, the rest shards as before.
  lm = convert_llm.load_llm(path, mesh=mesh, scan_layers=True)
  qkv = lm.blocks.attn.qkv.kernel[...]
  assert qkv.shape == (2, 64, 2, 4, 16)
  assert qkv.sharding.is_equivalent_to(NamedSharding(mesh, sharding.logical_to_spec(
      ("layers", "embed", "kv_heads", "fused", "head_dim"))), 5)
  assert qkv.sharding.spec[2] == "tensor"        # whole GQA groups per tensor shard
  with sharding.use_mesh(mesh):
    logits, _ = _forward(lm, tokens, pos, mask)
  np.testing.assert_allclose(np.asarray(logits), np.asarray(ref), atol=1e-5, rtol=0)
