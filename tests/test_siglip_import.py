"""HF SiglipVisionModel (tiny, random) -> our ViT: same outputs, every tensor used."""
import json

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from facetrack_jax import sharding
from facetrack_jax.convert.safetensors_io import read_safetensors
from facetrack_jax.convert.siglip import load_siglip_vision, siglip_config_from_hf

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            image_size=32, patch_size=8)


def _hf_model(use_head: bool, seed: int = 0):
  torch.manual_seed(seed)
  cfg = transformers.SiglipVisionConfig(**TINY, vision_use_head=use_head)
  model = transformers.SiglipVisionModel(cfg).eval()
  with torch.no_grad():   # HF inits biases and LN to 0/1: randomise so the test sees them
    for p in model.parameters():
      p.add_(0.1 * torch.randn_like(p))
  return model


def _saved(use_head, tmp_path_factory):
  model = _hf_model(use_head)
  path = tmp_path_factory.mktemp("siglip")
  model.save_pretrained(path, safe_serialization=True)
  return model, path


@pytest.fixture(scope="module")
def with_head(tmp_path_factory):
  return _saved(True, tmp_path_factory)


@pytest.fixture(scope="module")
def without_head(tmp_path_factory):
  return _saved(False, tmp_path_factory)


@pytest.fixture(params=["without_head", "with_head"])
def hf_checkpoint(request):
  return request.getfixturevalue(request.param)


def _pixels(size=32, b=2, seed=1):
  return torch.from_numpy(np.random.default_rng(seed).uniform(-1, 1, (b, 3, size, size))
                          .astype(np.float32))


@nnx.jit
def _forward(vit, images_bhwc):
  tokens = vit(images_bhwc)
  return tokens, (vit.pool(tokens) if vit.head is not None else None)


def _ours(vit, pixels_bchw):
  return _forward(vit, jnp.asarray(pixels_bchw.permute(0, 2, 3, 1).numpy()))


def _assert_matches(vit, hf, size, interpolate=False, atol=1e-4):
  pixels = _pixels(size)
  with torch.no_grad():
    ref = hf(pixel_values=pixels, interpolate_pos_encoding=interpolate)
  with sharding.use_mesh(_mesh_of(vit)):
    tokens, pooled = _ours(vit, pixels)
  np.testing.assert_allclose(tokens, ref.last_hidden_state.numpy(), atol=atol)
  if hf.config.vision_use_head:
    np.testing.assert_allclose(pooled, ref.pooler_output.numpy(), atol=atol)


def _mesh_of(vit):
  return vit.pos_embed[...].sharding.mesh


def test_config_from_hf_json(hf_checkpoint):
  hf, path = hf_checkpoint
  cfg = siglip_config_from_hf(json.loads((path / "config.json").read_text()))
  assert (cfg.width, cfg.depth, cfg.num_heads, cfg.mlp_dim, cfg.image_size, cfg.patch_size) == (
      32, 2, 2, 64, 32, 8)
  assert cfg.use_head == hf.config.vision_use_head
  assert siglip_config_from_hf({"vision_config": {"hidden_size": 48}}).width == 48  # SiglipModel
  with pytest.raises(ValueError, match="hidden_act"):
    siglip_config_from_hf({"hidden_act": "relu"})


def test_fp32_outputs_match_hf(hf_checkpoint):
  hf, path = hf_checkpoint
  vit = load_siglip_vision(path)               # config.json read from the directory
  _assert_matches(vit, hf, 32)
  if hf.config.vision_use_head:  # once: another input size, HF's bicubic
    _assert_matches(vit, hf, 16, interpolate=True)   # interpolate_pos_encoding


def test_scanned_layout_matches_hf(with_head):
  hf, path = with_head
  vit = load_siglip_vision(path, scan_layers=True)   # HF layer n -> row n of the stack
  fc1 = np.asarray(vit.blocks.mlp.fc1.kernel[...])
  assert fc1.shape == (2, 32, 64)
  hf_weights = {k.removeprefix("vision_model."): v for k, v in hf.state_dict().items()}
  np.testing.assert_array_equal(fc1[1], hf_weights["encoder.layers.1.mlp.fc1.weight"].numpy().T)
  _assert_matches(vit, hf, 32)


def test_bf16_checkpoint(tmp_path):
  hf = _hf_model(use_head=True, seed=2).to(torch.bfloat16)
  hf.save_pretrained(tmp_path, safe_serialization=True)
  assert "BF16" in (tmp_path / "model.safetensors").read_bytes()[:4096].decode("latin-1")
  vit = load_siglip_vision(tmp_path)
  got = np.asarray(vit.blocks[1].mlp.fc1.kernel[...])
  hf_weights = {k.removeprefix("vision_model."): v for k, v in hf.state_dict().items()}
  want = hf_weights["encoder.layers.1.mlp.fc1.weight"].float().T.numpy()
  np.testing.assert_array_equal(got, want)    # bf16 -> f32 is exact
  _assert_matches(vit, hf.float(), 32)


@pytest.mark.parametrize("edit, error, match", [
    (lambda t: t.update({"encoder.layers.0.extra.weight": np.zeros(3, np.float32)}),
     ValueError, "encoder.layers.0.extra.weight"),
    (lambda t: t.pop("encoder.layers.1.mlp.fc2.bias"), KeyError, "encoder.layers.1.mlp.fc2.bias"),
    (lambda t: t.update({"embeddings.position_embedding.weight": np.zeros((15, 32), np.float32)}),
     ValueError, r"embeddings.position_embedding.weight.*\(15, 32\)"),
], ids=["extra", "missing", "misshaped"])
def test_bad_checkpoint_names_the_tensor(hf_checkpoint, tmp_path, edit, error, match):
  from safetensors.numpy import save_file
  hf, path = hf_checkpoint
  tensors = {k: np.array(v) for k, v in read_safetensors(path).items()}
  edit(tensors)
  save_file(tensors, str(tmp_path / "bad.safetensors"))
  cfg = siglip_config_from_hf(hf.config.to_dict())
  with pytest.raises(error, match=match):
    load_siglip_vision(tmp_path / "bad.safetensors", cfg)


def test_head_config_mismatch_names_the_head_tensors(hf_checkpoint):
  hf, path = hf_checkpoint
  cfg = siglip_config_from_hf(hf.config.to_dict())
  cfg.use_head = not cfg.use_head
  if cfg.use_head:    # checkpoint without head, config with one
    with pytest.raises(KeyError, match="head.probe"):
      load_siglip_vision(path, cfg)
  else:               # checkpoint with head, config without: head tensors left unused
    with pytest.raises(ValueError, match="left unused.*head.attention.in_proj_weight"):
      load_siglip_vision(path, cfg)


def test_sharded_import_on_8_devices(with_head):
  hf, path = with_head
  mesh = sharding.make_mesh((2, 2, 2))
  vit = load_siglip_vision(path, mesh=mesh)
  params = nnx.to_flat_state(nnx.state(vit, nnx.Param))
  assert len(params) > 0
  for p, var in params:
    value = var[...]
    want = sharding.logical_to_spec(var.get_metadata()["out_sharding"])
    assert value.sharding.mesh == mesh
    assert value.sharding.spec == want, ".".join(map(str, p))
  # Something is really split: the q kernel over fsdp (width) and tensor (heads).
  q = vit.blocks[0].attn.q.kernel[...]
  assert q.addressable_shards[0].data.shape == (16, 1, 16)
  _assert_matches(vit, hf, 32)
