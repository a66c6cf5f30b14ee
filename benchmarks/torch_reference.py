"""The PyTorch reference a user would run: FaceTrack-MM from HF parts, with
*our* weights.

* :func:`export_hf` writes our towers as HF checkpoints — the reverse of
  ``facetrack_jax/convert/siglip.py`` and ``convert/llm.py``::

      <dir>/vit/       SiglipVisionModel   (config.json + model.safetensors)
      <dir>/face_vit/  SiglipVisionModel   (absent with shared_towers / no faces)
      <dir>/lm/        Qwen2ForCausalLM    (LlamaForCausalLM when qkv_bias=False)
      <dir>/connector.safetensors   streams + time embedding, our dotted names

  so ``load_siglip_vision`` / ``load_llm`` read them back unchanged and
  ``from_pretrained`` loads them in transformers.
* :class:`TorchFaceTrack` is the same model in torch: the HF towers loaded
  with ``from_pretrained`` and our connector (grid average pool or K-query
  attention pool, 2-layer GELU projector, "no face" embedding, time
  embedding, splice) re-expressed in torch. ``tests/test_torch_reference.py``
  checks it gives our logits.
"""

from __future__ import annotations

import math
import pathlib

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from flax import nnx
from safetensors.numpy import save_file
from torch import nn

# -- our params -> HF tensors ------------------------------------------------------


def _np(x) -> np.ndarray:
  return np.ascontiguousarray(np.asarray(x, np.float32))


def siglip_tensors(p: dict, cfg) -> dict[str, np.ndarray]:
  """Our ViT params (pure dict) -> ``SiglipVisionModel`` state dict (numpy)."""
  d = cfg.width
  out = {"embeddings.patch_embedding.weight": p["patch_embed"]["kernel"].transpose(3, 2, 0, 1),
         "embeddings.patch_embedding.bias": p["patch_embed"]["bias"],
         "embeddings.position_embedding.weight": p["pos_embed"]}

  def attention(hf, a):   # q/k/v kernel [D, H, E] -> weight [H*E, D]
    for n in "qkv":
      out[f"{hf}.{n}_proj.weight"] = a[n]["kernel"].reshape(d, d).T
      out[f"{hf}.{n}_proj.bias"] = a[n]["bias"].reshape(d)
    out[f"{hf}.out_proj.weight"] = a["out"]["kernel"].reshape(d, d).T
    out[f"{hf}.out_proj.bias"] = a["out"]["bias"]

  def norm(hf, n):
    out[f"{hf}.weight"], out[f"{hf}.bias"] = n["scale"], n["bias"]

  def mlp(hf, m):
    for n in ("fc1", "fc2"):
      out[f"{hf}.{n}.weight"], out[f"{hf}.{n}.bias"] = m[n]["kernel"].T, m[n]["bias"]

  for i in range(cfg.depth):
    blk, hf = p["blocks"][i], f"encoder.layers.{i}"
    norm(f"{hf}.layer_norm1", blk["ln1"])
    attention(f"{hf}.self_attn", blk["attn"])
    norm(f"{hf}.layer_norm2", blk["ln2"])
    mlp(f"{hf}.mlp", blk["mlp"])
  norm("post_layernorm", p["post_ln"])
  if cfg.use_head:
    h = p["head"]
    out["head.probe"] = h["probe"].reshape(1, 1, d)
    out["head.attention.in_proj_weight"] = np.concatenate(
        [h["attn"][n]["kernel"].reshape(d, d).T for n in "qkv"])
    out["head.attention.in_proj_bias"] = np.concatenate(
        [h["attn"][n]["bias"].reshape(d) for n in "qkv"])
    out["head.attention.out_proj.weight"] = h["attn"]["out"]["kernel"].reshape(d, d).T
    out["head.attention.out_proj.bias"] = h["attn"]["out"]["bias"]
    norm("head.layernorm", h["ln"])
    mlp("head.mlp", h["mlp"])
  return {k: _np(v) for k, v in out.items()}


def siglip_config(cfg) -> transformers.SiglipVisionConfig:
  return transformers.SiglipVisionConfig(
      hidden_size=cfg.width, intermediate_size=cfg.mlp_dim, num_hidden_layers=cfg.depth,
      num_attention_heads=cfg.num_heads, image_size=cfg.image_size, patch_size=cfg.patch_size,
      layer_norm_eps=cfg.layernorm_eps, hidden_act="gelu_pytorch_tanh",
      vision_use_head=bool(cfg.use_head), attention_dropout=0.0)


def lm_tensors(p: dict, cfg) -> dict[str, np.ndarray]:
  """Our LM params (pure dict) -> ``Qwen2ForCausalLM`` state dict (numpy)."""
  d, h, kvh, dh = cfg.width, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
  out = {"model.embed_tokens.weight": p["embedding"], "model.norm.weight": p["final_norm"]["scale"]}
  for n in range(cfg.depth):
    blk, hf = p["blocks"][n], f"model.layers.{n}"
    out[f"{hf}.input_layernorm.weight"] = blk["attn_norm"]["scale"]
    out[f"{hf}.post_attention_layernorm.weight"] = blk["mlp_norm"]["scale"]
    g = h // kvh      # fused qkv [D, KVH, G+2, Dh]: per kv head its G queries, k, v
    parts = {"q": slice(0, g), "k": slice(g, g + 1), "v": slice(g + 1, g + 2)}
    for name, part in parts.items():
      w = np.asarray(blk["attn"]["qkv"]["kernel"])[:, :, part]
      out[f"{hf}.self_attn.{name}_proj.weight"] = w.reshape(d, -1).T
      if cfg.qkv_bias:
        out[f"{hf}.self_attn.{name}_proj.bias"] = np.asarray(
            blk["attn"]["qkv"]["bias"])[:, part].reshape(-1)
    out[f"{hf}.self_attn.o_proj.weight"] = blk["attn"]["o"]["kernel"].reshape(h * dh, d).T
    gate_up = np.asarray(blk["mlp"]["gate_up"]["kernel"])          # [D, 2, F]
    out[f"{hf}.mlp.gate_proj.weight"] = gate_up[:, 0].T
    out[f"{hf}.mlp.up_proj.weight"] = gate_up[:, 1].T
    out[f"{hf}.mlp.down_proj.weight"] = blk["mlp"]["down"]["kernel"].T
  if not cfg.tie_embeddings:
    out["lm_head.weight"] = p["lm_head"]["kernel"].T
  return {k: _np(v) for k, v in out.items()}


def lm_config(cfg, pad_id: int = 0) -> transformers.PretrainedConfig:
  """Qwen2 config (Llama when there are no q/k/v biases)."""
  kw = dict(vocab_size=cfg.vocab_size, hidden_size=cfg.width, intermediate_size=cfg.mlp_dim,
            num_hidden_layers=cfg.depth, num_attention_heads=cfg.num_heads,
            num_key_value_heads=cfg.num_kv_heads, head_dim=cfg.head_dim,
            max_position_embeddings=cfg.max_len, rms_norm_eps=cfg.rms_eps,
            tie_word_embeddings=bool(cfg.tie_embeddings), hidden_act="silu",
            rope_parameters=dict(rope_type="default", rope_theta=float(cfg.rope_theta)),
            pad_token_id=pad_id, bos_token_id=None, eos_token_id=None, attention_dropout=0.0)
  if cfg.qkv_bias:
    return transformers.Qwen2Config(**kw, use_sliding_window=False)
  return transformers.LlamaConfig(**kw, attention_bias=False, mlp_bias=False)


def save_hf(tensors: dict, config, out) -> None:
  """``config.json`` + ``model.safetensors`` (fp32) in directory ``out``."""
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  config.dtype = "float32"
  config.save_pretrained(out)
  save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})


def export_lm(lm, lm_cfg, out_dir) -> None:
  """Our :class:`LM` alone as an HF Qwen2 (Llama) checkpoint."""
  save_hf(lm_tensors(nnx.to_pure_dict(nnx.state(lm, nnx.Param)), lm_cfg), lm_config(lm_cfg),
          out_dir)


def _flat(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
  out = {}
  for k, v in tree.items():
    name = f"{prefix}{k}"
    out.update(_flat(v, name + ".") if isinstance(v, dict) else {name: _np(v)})
  return out


def export_hf(model, model_cfg, out_dir) -> pathlib.Path:
  """Writes ``model`` (a :class:`FaceTrackMM`) as HF checkpoints; see the
  module docstring. Returns ``out_dir``."""
  out = pathlib.Path(out_dir)
  p = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  save_hf(siglip_tensors(p["vit"], model_cfg.vit), siglip_config(model_cfg.vit), out / "vit")
  if p.get("face_vit"):
    save_hf(siglip_tensors(p["face_vit"], model_cfg.face_vit),
          siglip_config(model_cfg.face_vit), out / "face_vit")
  save_hf(lm_tensors(p["lm"], model_cfg.lm), lm_config(model_cfg.lm), out / "lm")
  connector = {k: p[k] for k in ("global_stream", "face_stream", "time_embedding") if p.get(k)}
  save_file(_flat(connector), str(out / "connector.safetensors"))
  (out / "facetrack_config.json").write_text(model_cfg.to_json_best_effort(indent=1))
  return out


# -- the torch model ---------------------------------------------------------------


class AttnPool(nn.Module):
  """K learned probes cross-attend over the tokens; ``y += mlp(ln(y))``."""

  def __init__(self, k: int, width: int, heads: int, mlp_dim: int, eps: float):
    super().__init__()
    self.probe = nn.Parameter(torch.zeros(k, width))
    self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
    self.ln = nn.LayerNorm(width, eps=eps)
    self.fc1, self.fc2 = nn.Linear(width, mlp_dim), nn.Linear(mlp_dim, width)

  def forward(self, x_bnd):
    probe = self.probe[None].expand(x_bnd.shape[0], -1, -1)
    y = self.attn(probe, x_bnd, x_bnd, need_weights=False)[0]
    return y + self.fc2(F.gelu(self.fc1(self.ln(y)), approximate="tanh"))


class Stream(nn.Module):
  """Pool (grid average or attention) -> fc1 -> GELU -> fc2 [-> no-face swap]."""

  def __init__(self, vit_cfg, kind: str, k: int, hidden: int, lm_width: int, masked: bool):
    super().__init__()
    self.k = k
    self.pool = (AttnPool(k, vit_cfg.width, vit_cfg.num_heads, vit_cfg.mlp_dim,
                          vit_cfg.layernorm_eps) if kind == "attn" else None)
    self.fc1, self.fc2 = nn.Linear(vit_cfg.width, hidden), nn.Linear(hidden, lm_width)
    self.no_face = nn.Parameter(torch.zeros(k, lm_width)) if masked else None

  def forward(self, x_bnd, mask_b=None):
    if self.pool is None:
      b, n, d = x_bnd.shape
      g, kk = math.isqrt(n), math.isqrt(self.k)
      grid = x_bnd.transpose(1, 2).reshape(b, d, g, g)
      y = F.adaptive_avg_pool2d(grid, kk).reshape(b, d, self.k).transpose(1, 2)
    else:
      y = self.pool(x_bnd)
    y = self.fc2(F.gelu(self.fc1(y), approximate="tanh"))
    if self.no_face is None:
      return y
    return torch.where(mask_b[:, None, None], y, self.no_face[None])


def _load_stream(stream: Stream, p: dict, prefix: str):
  t = lambda name: torch.from_numpy(p[f"{prefix}.{name}"])
  sd = {"fc1.weight": t("proj.fc1.kernel").T, "fc1.bias": t("proj.fc1.bias"),
        "fc2.weight": t("proj.fc2.kernel").T, "fc2.bias": t("proj.fc2.bias")}
  if stream.no_face is not None:
    sd["no_face"] = t("no_face")
  if stream.pool is not None:
    m = "pool.map"
    d = stream.pool.probe.shape[1]
    sd["pool.probe"] = t(f"{m}.probe")
    sd["pool.attn.in_proj_weight"] = torch.cat(
        [t(f"{m}.attn.{n}.kernel").reshape(d, d).T for n in "qkv"])
    sd["pool.attn.in_proj_bias"] = torch.cat([t(f"{m}.attn.{n}.bias").reshape(d) for n in "qkv"])
    sd["pool.attn.out_proj.weight"] = t(f"{m}.attn.out.kernel").reshape(d, d).T
    sd["pool.attn.out_proj.bias"] = t(f"{m}.attn.out.bias")
    sd["pool.ln.weight"], sd["pool.ln.bias"] = t(f"{m}.ln.scale"), t(f"{m}.ln.bias")
    for n in ("fc1", "fc2"):
      sd[f"pool.{n}.weight"], sd[f"pool.{n}.bias"] = t(f"{m}.mlp.{n}.kernel").T, t(f"{m}.mlp.{n}.bias")
  stream.load_state_dict({k: v.contiguous() for k, v in sd.items()}, strict=True)


class TorchFaceTrack(nn.Module):
  """FaceTrack-MM in torch from an :func:`export_hf` directory.

  ``forward(frames, faces, face_mask, tokens) -> logits float[B, L, V]`` on
  torch tensors of the batch contract (uint8 frames/faces, bool mask, int64
  tokens); ``embed(...)`` gives the LM input embeddings (for ``generate``).
  """

  def __init__(self, hf_dir, model_cfg, *, attn_implementation: str | None = None):
    super().__init__()
    hf_dir = pathlib.Path(hf_dir)
    m, c = model_cfg, model_cfg.compressor
    kw = dict(dtype=torch.float32)
    if attn_implementation:
      kw["attn_implementation"] = attn_implementation
    self.num_frames, self.visual_token_id = m.num_frames, m.visual_token_id
    self.vit = transformers.SiglipVisionModel.from_pretrained(hf_dir / "vit", **kw)
    self.face_vit = (transformers.SiglipVisionModel.from_pretrained(hf_dir / "face_vit", **kw)
                     if (hf_dir / "face_vit").is_dir() else None)
    lm_cls = transformers.Qwen2ForCausalLM if m.lm.qkv_bias else transformers.LlamaForCausalLM
    self.lm = lm_cls.from_pretrained(hf_dir / "lm", **kw)
    p = _read(hf_dir / "connector.safetensors")
    self.global_stream = Stream(m.vit, "avg", c.global_tokens, c.projector_hidden, m.lm.width,
                                masked=False)
    _load_stream(self.global_stream, p, "global_stream")
    self.face_stream = None
    if c.face_tokens > 0:
      face_cfg = m.vit if m.shared_towers else m.face_vit
      self.face_stream = Stream(face_cfg, c.face_pool, c.face_tokens, c.projector_hidden,
                                m.lm.width, masked=True)
      _load_stream(self.face_stream, p, "face_stream")
    self.time_table = nn.Parameter(torch.from_numpy(p["time_embedding.table"]))
    # HF resamples position embeddings bicubically; ours does what the config says.
    uses = [(m.vit, m.frame_size)] + ([(m.vit if m.shared_towers else m.face_vit, m.face_size)]
                                      if c.face_tokens > 0 else [])
    for vcfg, size in uses:
      if size != vcfg.image_size and vcfg.get("posemb_resample", "bilinear") != "bicubic":
        raise ValueError(f"TorchFaceTrack: a ViT made for {vcfg.image_size} px sees {size} px; "
                         "HF resamples its position embeddings bicubically, so set "
                         "posemb_resample='bicubic' in that ViT's config to compare")

  @staticmethod
  def _pixels(x_bthwc):
    b, t = x_bthwc.shape[:2]
    x = x_bthwc.reshape(b * t, *x_bthwc.shape[2:]).permute(0, 3, 1, 2)
    return x.float() / 127.5 - 1.0

  def encode_visual(self, frames, faces, face_mask):
    """-> visual tokens float[B, T*(G+K), D]."""
    b, t = frames.shape[:2]
    g = self.vit(pixel_values=self._pixels(frames), interpolate_pos_encoding=True).last_hidden_state
    g = self.global_stream(g)
    parts = [g.reshape(b, t, -1, g.shape[-1])]
    if self.face_stream is not None:
      tower = self.vit if self.face_vit is None else self.face_vit
      f = tower(pixel_values=self._pixels(faces), interpolate_pos_encoding=True).last_hidden_state
      f = self.face_stream(f, face_mask.reshape(b * t))
      parts.append(f.reshape(b, t, -1, f.shape[-1]))
    v = torch.cat(parts, dim=2) + self.time_table[:t][None, :, None, :]
    return v.reshape(b, -1, v.shape[-1])

  def embed(self, frames, faces, face_mask, tokens):
    """Text embeddings with the visual tokens put at the placeholders in order."""
    x = self.lm.get_input_embeddings()(tokens)
    visual = self.encode_visual(frames, faces, face_mask).to(x.dtype)
    is_visual = (tokens == self.visual_token_id)[..., None].expand_as(x)
    return x.masked_scatter(is_visual, visual)

  def forward(self, frames, faces, face_mask, tokens):
    return self.lm(inputs_embeds=self.embed(frames, faces, face_mask, tokens)).logits


def _read(path) -> dict[str, np.ndarray]:
  from safetensors.numpy import load_file
  return load_file(str(path))


def masked_ce(logits_blv, targets_bl, loss_mask_bl):
  """Σ CE·mask / Σ mask — the trainer's loss."""
  ce = F.cross_entropy(logits_blv.float().flatten(0, 1), targets_bl.flatten(), reduction="none")
  mask = loss_mask_bl.flatten().float()
  return (ce * mask).sum() / mask.sum().clamp_min(1.0)


def to_torch(batch_np: dict) -> dict[str, torch.Tensor]:
  out = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch_np.items()}
  for k in ("tokens", "targets", "prompt"):
    if k in out:
      out[k] = out[k].long()
  return out
