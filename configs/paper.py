"""FaceTrack-MM at the paper's scale: SigLIP-so400m/14 @ 384 + Qwen2-7B, 8 frames.

Never materialised in tests — only abstractly: ``jax.eval_shape``
(``python -m facetrack_jax.models.summary --config configs/paper.py``) and the
AOT dry run on fake devices (``python -m facetrack_jax.dryrun --config
configs/paper.py --devices 256 --mesh fsdp=256``).
Face crops go through the same SigLIP tower (shared_towers) at 224 px
(16×16 patches, position grid resampled), pooled to 16 tokens per frame;
global frames are pooled from 27×27 to 14×14 = 196 tokens per frame.
Layers are scanned (one compiled layer per stack) and fully rematerialised
(the README's layout study: the policy that fits on the most meshes).
"""

import importlib.util
import pathlib


def _sibling(name):
  spec = importlib.util.spec_from_file_location(
      f"configs_{name}", pathlib.Path(__file__).with_name(f"{name}.py"))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def get_model_config():
  m = _sibling("tiny").get_model_config()
  m.num_frames, m.frame_size, m.face_size = 8, 384, 224
  m.dtype, m.param_dtype = "bfloat16", "float32"
  m.shared_towers = True
  m.scan_layers, m.remat = True, "full"
  # SigLIP-so400m-patch14-384 vision tower (with its MAP head, as published).
  m.vit.update(image_size=384, patch_size=14, width=1152, depth=27, num_heads=16,
               mlp_dim=4304, layernorm_eps=1e-6, use_head=True)
  m.face_vit = m.vit.copy_and_resolve_references()
  m.compressor.update(face_tokens=16, face_pool="avg", global_tokens=196,
                      projector_hidden=3584)
  # Qwen2-7B.
  m.lm.update(vocab_size=152064, width=3584, depth=28, num_heads=28, num_kv_heads=4,
              head_dim=128, mlp_dim=18944, rope_theta=1000000.0, rms_eps=1e-6,
              qkv_bias=True, tie_embeddings=False, max_len=32768)
  m.visual_token_id = 151655   # Qwen2-VL's <|image_pad|>
  return m


def get_config():
  config = _sibling("tiny_synthetic").get_config()   # data, train, init, distributed sections
  config.model = get_model_config()
  config.mesh.shape = (1, -1, 1)   # FSDP over all devices
  # 8 × (196 + 16) = 1,696 visual tokens + prompt and caption.
  config.data.max_len = 2048
  config.data.batch_size = 256
  config.train.update(learning_rate=2e-5, warmup_steps=100)
  return config
