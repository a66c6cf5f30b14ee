"""HF ``Qwen2ForCausalLM`` / ``LlamaForCausalLM`` safetensors → :class:`LM`.

    cfg = lm_config_from_hf(json.load(open(f"{ckpt}/config.json")))
    lm = load_llm(ckpt, cfg, mesh=mesh)          # or load_llm(ckpt, None, ...)

Name and layout map (HF ``nn.Linear`` weights are ``[out, in]``):

    model.embed_tokens.weight [V, D]              -> embedding [V, D]
    model.layers.N.input_layernorm.weight         -> blocks.N.attn_norm.scale
    model.layers.N.self_attn.{q,k,v}_proj.weight  -> blocks.N.attn.qkv.kernel [D, KVH, G+2, Dh]
        q [H*Dh, D] -> [D, KVH, G, Dh] (G = H/KVH), k and v [KVH*Dh, D] -> [D, KVH, 1, Dh],
        concatenated on the third axis (biases alike -> qkv.bias [KVH, G+2, Dh])
    model.layers.N.self_attn.o_proj.weight [D, H*Dh] -> blocks.N.attn.o.kernel [H, Dh, D]
    model.layers.N.post_attention_layernorm.weight -> blocks.N.mlp_norm.scale
    model.layers.N.mlp.{gate,up}_proj.weight [F, D] -> blocks.N.mlp.gate_up.kernel [D, 2, F]
    model.layers.N.mlp.down_proj.weight [D, F]   -> blocks.N.mlp.down.kernel [F, D]
    model.norm.weight                             -> final_norm.scale
    lm_head.weight [V, D]                         -> lm_head.kernel [D, V]  (absent when tied)

No permutation of q/k is needed: :func:`facetrack_jax.models.lm.rope` uses
HF's ``rotate_half`` layout.
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
from facetrack_jax.models.lm import LM


def lm_config_from_hf(hf: dict) -> ml_collections.ConfigDict:
  """``config.json`` of a Qwen2 / Llama checkpoint -> ``config.model.lm``."""
  kind = hf.get("model_type")
  if kind not in ("qwen2", "llama"):
    raise ValueError(f"config.json: model_type {kind!r} is not supported (qwen2, llama)")
  if hf.get("hidden_act", "silu") != "silu":
    raise ValueError(f"config.json: hidden_act {hf['hidden_act']!r} is not supported (silu)")
  if hf.get("mlp_bias", False):
    raise ValueError("config.json: mlp_bias=true is not supported")
  if hf.get("use_sliding_window", False) or "sliding_attention" in (hf.get("layer_types") or ()):
    raise ValueError("config.json: sliding-window attention is not supported")
  rope = dict(hf.get("rope_parameters") or {})
  legacy_scaling = hf.get("rope_scaling") or {}
  rope_type = rope.get("rope_type", legacy_scaling.get("rope_type", legacy_scaling.get("type", "default")))
  if rope_type != "default":
    raise ValueError(f"config.json: rope type {rope_type!r} is not supported (default)")
  theta = rope.get("rope_theta", hf.get("rope_theta", 10000.0))
  width, heads = hf["hidden_size"], hf["num_attention_heads"]
  head_dim = hf.get("head_dim") or width // heads
  qkv_bias = True if kind == "qwen2" else bool(hf.get("attention_bias", False))
  return ml_collections.ConfigDict(dict(
      vocab_size=hf["vocab_size"], width=width, depth=hf["num_hidden_layers"],
      num_heads=heads, num_kv_heads=hf.get("num_key_value_heads") or heads,
      head_dim=head_dim, mlp_dim=hf["intermediate_size"], rope_theta=float(theta),
      rms_eps=float(hf.get("rms_norm_eps", 1e-6)), qkv_bias=qkv_bias,
      tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
      max_len=hf.get("max_position_embeddings", 2048)))


def _hf_arrays(src: TensorSource, cfg) -> dict[str, np.ndarray]:
  """Every LM parameter (dotted NNX path) from the HF tensors, in our layout."""
  d, h, kvh, dh, f, v = (cfg.width, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim,
                         cfg.mlp_dim, cfg.vocab_size)
  out = {"embedding": src.take("model.embed_tokens.weight", (v, d))}
  for n in tqdm(range(cfg.depth), desc="LLM layers", leave=False):
    hf, me = f"model.layers.{n}", f"blocks.{n}"
    out[f"{me}.attn_norm.scale"] = src.take(f"{hf}.input_layernorm.weight", (d,))
    out[f"{me}.mlp_norm.scale"] = src.take(f"{hf}.post_attention_layernorm.weight", (d,))
    groups = (("q", h // kvh), ("k", 1), ("v", 1))     # per kv head: its G queries, k, v
    w = [src.take(f"{hf}.self_attn.{n}_proj.weight", (kvh * g * dh, d)).T.reshape(d, kvh, g, dh)
         for n, g in groups]
    out[f"{me}.attn.qkv.kernel"] = np.concatenate(w, axis=2)
    if cfg.qkv_bias:
      out[f"{me}.attn.qkv.bias"] = np.concatenate(
          [src.take(f"{hf}.self_attn.{n}_proj.bias", (kvh * g * dh,)).reshape(kvh, g, dh)
           for n, g in groups], axis=1)
    out[f"{me}.attn.o.kernel"] = src.take(f"{hf}.self_attn.o_proj.weight", (d, h * dh)).T.reshape(h, dh, d)
    out[f"{me}.mlp.gate_up.kernel"] = np.stack(
        [src.take(f"{hf}.mlp.{n}_proj.weight", (f, d)).T for n in ("gate", "up")], axis=1)
    out[f"{me}.mlp.down.kernel"] = src.take(f"{hf}.mlp.down_proj.weight", (d, f)).T
    src.skip(f"{hf}.self_attn.rotary_emb.inv_freq")   # a buffer older HF versions save
  out["final_norm.scale"] = src.take("model.norm.weight", (d,))
  if cfg.tie_embeddings:
    if "lm_head.weight" in src:    # some tied checkpoints store the copy anyway
      head = src.take("lm_head.weight", (v, d))
      if not np.array_equal(head, out["embedding"]):
        raise ValueError(f"{src.origin}: tie_embeddings=True but 'lm_head.weight' differs "
                         "from 'model.embed_tokens.weight'")
  else:
    out["lm_head.kernel"] = src.take("lm_head.weight", (v, d)).T
  src.check_all_used()
  return out


def load_llm(path: str | os.PathLike, cfg=None, *, mesh=None, dtype=jnp.float32,
             param_dtype=jnp.float32, scan_layers: bool = False) -> LM:
  """An :class:`LM` holding the weights of an HF Qwen2/Llama checkpoint.

  path: a ``.safetensors`` file or a directory of them (HF sharded layout).
  cfg: ``config.model.lm``; None reads ``config.json`` next to the weights.
  scan_layers: the LM's layer layout (per-layer tensors stacked for a scanned LM).
  Each parameter is placed onto its sharding on ``mesh`` (None: one device).
  Any missing, extra or mis-shaped tensor is an error naming it.
  """
  path = paths.resolve(path)
  if cfg is None:
    cfg_file = (path if path.is_dir() else path.parent) / "config.json"
    if not cfg_file.is_file():
      raise FileNotFoundError(f"load_llm: cfg not given and {cfg_file} does not exist")
    cfg = lm_config_from_hf(json.loads(cfg_file.read_text()))
  src = TensorSource.open(path)
  arrays = _hf_arrays(src, cfg)
  if scan_layers:
    arrays = layers.stack_layer_arrays(arrays, cfg.depth)
  return materialize(lambda: LM(cfg, dtype=dtype, param_dtype=param_dtype, rngs=nnx.Rngs(0),
                                scan_layers=scan_layers), arrays, mesh)
