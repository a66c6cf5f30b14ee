"""HF ``SiglipVisionModel`` safetensors -> :class:`facetrack_jax.models.vit.ViT`.

Every tensor of the checkpoint is taken exactly once (an unused, missing or
mis-shaped tensor is an error naming it) and placed straight onto the
sharding its parameter's logical axes give on ``mesh``.

HF conventions handled here: torch ``Linear.weight`` is ``[out, in]``
(transposed to ``[in, out]``, then split into heads for q/k/v/out);
``Conv2d.weight`` is ``[out, in, kh, kw]`` (to ``[kh, kw, in, out]``);
``position_embedding`` is an ``nn.Embedding`` ``[N, D]``; the MAP head's
``nn.MultiheadAttention`` packs q, k, v into one ``in_proj_weight [3D, D]``.
Checkpoints of a full ``SiglipModel`` keep the tower under ``vision_model.``;
that prefix is recognised, but the text tower's tensors are then reported
as unused (extract the vision tower first).
"""

from __future__ import annotations

import json
import os

import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx
from tqdm import tqdm

from facetrack_jax import paths
from facetrack_jax.convert.safetensors_io import TensorSource, materialize
from facetrack_jax.models import layers
from facetrack_jax.models.vit import ViT

# SiglipVisionConfig defaults (HF saves only the fields that differ from them).
_HF_DEFAULTS = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                    num_attention_heads=12, num_channels=3, image_size=224, patch_size=16,
                    hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6, vision_use_head=True)
_TANH_GELUS = ("gelu_pytorch_tanh", "gelu_new", "gelu_fast")


def siglip_config_from_hf(config: dict) -> ml_collections.ConfigDict:
  """An HF ``config.json`` (of a ``SiglipVisionModel``, or of a ``SiglipModel``
  with a ``vision_config``) -> a ViT config like ``config.model.vit``."""
  c = dict(_HF_DEFAULTS, **config.get("vision_config", config))
  if c["num_channels"] != 3:
    raise ValueError(f"SigLIP config: num_channels must be 3, got {c['num_channels']}")
  if c["hidden_act"] not in _TANH_GELUS:
    raise ValueError(f"SigLIP config: hidden_act {c['hidden_act']!r} is not supported "
                     f"(the ViT uses the tanh GELU: one of {_TANH_GELUS})")
  for key in ("image_size", "patch_size"):
    if not isinstance(c[key], int):
      raise ValueError(f"SigLIP config: {key} must be one int (square), got {c[key]!r}")
  return ml_collections.ConfigDict(dict(
      image_size=c["image_size"], patch_size=c["patch_size"], width=c["hidden_size"],
      depth=c["num_hidden_layers"], num_heads=c["num_attention_heads"],
      mlp_dim=c["intermediate_size"], layernorm_eps=float(c["layer_norm_eps"]),
      use_head=bool(c["vision_use_head"]),
      posemb_resample="bicubic"))  # as HF's interpolate_pos_encoding


def _read_config_json(path) -> dict:
  file = (path if path.is_dir() else path.parent) / "config.json"
  if not file.is_file():
    raise FileNotFoundError(f"{path}: no cfg given and no config.json beside the weights")
  return json.loads(file.read_text())


def _siglip_arrays(src: TensorSource, cfg: ml_collections.ConfigDict,
                   prefix: str) -> dict[str, np.ndarray]:
  """Every ViT parameter (dotted NNX path) from the HF tensors in ``src``."""
  d, m, h, p = cfg.width, cfg.mlp_dim, cfg.num_heads, cfg.patch_size
  e = d // h
  out: dict[str, np.ndarray] = {}

  def linear(hf: str, ours: str, n_in: int, n_out: int):
    out[f"{ours}.kernel"] = src.take(f"{prefix}{hf}.weight", (n_out, n_in)).T
    out[f"{ours}.bias"] = src.take(f"{prefix}{hf}.bias", (n_out,))

  def layernorm(hf: str, ours: str):
    out[f"{ours}.scale"] = src.take(f"{prefix}{hf}.weight", (d,))
    out[f"{ours}.bias"] = src.take(f"{prefix}{hf}.bias", (d,))

  def attention(ours: str, q, k, v, out_w, out_b):
    """q, k, v: (weight [D, D] torch layout, bias [D]) each."""
    for name, (w, b) in zip("qkv", (q, k, v)):
      out[f"{ours}.{name}.kernel"] = w.T.reshape(d, h, e)
      out[f"{ours}.{name}.bias"] = b.reshape(h, e)
    out[f"{ours}.out.kernel"] = out_w.T.reshape(h, e, d)
    out[f"{ours}.out.bias"] = out_b

  out["patch_embed.kernel"] = src.take(f"{prefix}embeddings.patch_embedding.weight",
                                       (d, 3, p, p)).transpose(2, 3, 1, 0)
  out["patch_embed.bias"] = src.take(f"{prefix}embeddings.patch_embedding.bias", (d,))
  out["pos_embed"] = src.take(f"{prefix}embeddings.position_embedding.weight",
                              ((cfg.image_size // p) ** 2, d))
  for i in tqdm(range(cfg.depth), desc="SigLIP layers", disable=None, leave=False):
    hf, ours = f"encoder.layers.{i}", f"blocks.{i}"
    layernorm(f"{hf}.layer_norm1", f"{ours}.ln1")
    qkv = [(src.take(f"{prefix}{hf}.self_attn.{n}_proj.weight", (d, d)),
            src.take(f"{prefix}{hf}.self_attn.{n}_proj.bias", (d,))) for n in "qkv"]
    attention(f"{ours}.attn", *qkv,
              src.take(f"{prefix}{hf}.self_attn.out_proj.weight", (d, d)),
              src.take(f"{prefix}{hf}.self_attn.out_proj.bias", (d,)))
    layernorm(f"{hf}.layer_norm2", f"{ours}.ln2")
    linear(f"{hf}.mlp.fc1", f"{ours}.mlp.fc1", d, m)
    linear(f"{hf}.mlp.fc2", f"{ours}.mlp.fc2", m, d)
  layernorm("post_layernorm", "post_ln")

  if cfg.use_head:
    out["head.probe"] = src.take(f"{prefix}head.probe", (1, 1, d)).reshape(1, d)
    w_3dd = src.take(f"{prefix}head.attention.in_proj_weight", (3 * d, d))
    b_3d = src.take(f"{prefix}head.attention.in_proj_bias", (3 * d,))
    attention("head.attn", *[(w_3dd[j * d:(j + 1) * d], b_3d[j * d:(j + 1) * d]) for j in range(3)],
              src.take(f"{prefix}head.attention.out_proj.weight", (d, d)),
              src.take(f"{prefix}head.attention.out_proj.bias", (d,)))
    layernorm("head.layernorm", "head.ln")
    linear("head.mlp.fc1", "head.mlp.fc1", d, m)
    linear("head.mlp.fc2", "head.mlp.fc2", m, d)
  src.check_all_used()
  return out


def load_siglip_vision(path: str | os.PathLike, cfg: ml_collections.ConfigDict | None = None,
                       *, mesh=None, dtype=jnp.float32, param_dtype=jnp.float32,
                       scan_layers: bool = False) -> ViT:
  """A :class:`ViT` holding the weights of an HF ``SiglipVisionModel``.

  ``path``: a ``.safetensors`` file or a directory of them (HF sharded).
  ``cfg``: the ViT config; ``None`` reads ``config.json`` beside the weights
  (:func:`siglip_config_from_hf`). ``mesh``: where the parameters go
  (``None``: one device). Parameters are stored in ``param_dtype``;
  ``scan_layers``: the ViT's layer layout (per-layer tensors stacked).
  """
  path = paths.resolve(path)
  if cfg is None:
    cfg = siglip_config_from_hf(_read_config_json(path))
  if cfg.width % cfg.num_heads:
    raise ValueError(f"SigLIP config: width {cfg.width} not divisible by num_heads {cfg.num_heads}")
  src = TensorSource.open(path)
  prefix = "vision_model." if "vision_model.embeddings.patch_embedding.weight" in src else ""
  arrays = _siglip_arrays(src, cfg, prefix)
  if scan_layers:
    arrays = layers.stack_layer_arrays(arrays, cfg.depth)
  make = lambda: ViT(cfg, dtype=dtype, param_dtype=param_dtype, rngs=nnx.Rngs(0),
                     scan_layers=scan_layers)
  return materialize(make, arrays, mesh)
