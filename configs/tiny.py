"""Tiny FaceTrack-MM: unit tests, seconds on CPU.

Every config file has ``get_config()`` returning an ``ml_collections.ConfigDict``;
override any field on the command line: ``--config.model.lm.depth=4``.
"""

import ml_collections


def get_model_config() -> ml_collections.ConfigDict:
  m = ml_collections.ConfigDict()
  m.num_frames = 8          # T: frames sampled per clip
  m.frame_size = 64         # H = W of the global view fed to the frame ViT
  m.face_size = 32          # S: side of the square face crop
  m.dtype = "float32"       # compute dtype ("bfloat16" for mixed precision)
  m.param_dtype = "float32"
  m.shared_towers = False   # True: face crops go through the frame ViT too
  # Layers of the ViTs and the LM: unrolled (False) or scanned with their
  # parameters stacked on a leading "layers" axis (True: one compiled layer);
  # remat: "none" | "full" | "dots_saveable" | "save_dot_except_mlp" | ...
  # (facetrack_jax/models/layers.py: REMAT_POLICIES).
  m.scan_layers = False
  m.remat = "none"
  # Attention of the ViTs and the LM: "einsum" (the reference), "dot_product"
  # (jax.nn.dot_product_attention: cuDNN flash attention on GPU with bf16),
  # "xla" | "cudnn" (that implementation), "auto" (per platform, by
  # measurement; facetrack_jax/models/attention.py).
  m.attention = "auto"

  # SigLIP-style ViT for global frames. image_size is the resolution its
  # position-embedding grid was made for; other input sizes resample it.
  m.vit = ml_collections.ConfigDict(dict(
      image_size=64, patch_size=16, width=64, depth=2, num_heads=2,
      mlp_dim=128, layernorm_eps=1e-6, use_head=False))
  # ViT for face crops (ignored when shared_towers).
  m.face_vit = ml_collections.ConfigDict(dict(
      image_size=32, patch_size=8, width=64, depth=2, num_heads=2,
      mlp_dim=128, layernorm_eps=1e-6, use_head=False))

  m.compressor = ml_collections.ConfigDict(dict(
      face_tokens=4,        # K tokens per face frame; 0 = global-only baseline
      face_pool="avg",      # "avg" (grid average pooling) | "attn" (K learned queries)
      global_tokens=4,      # tokens per global frame (a square grid)
      projector_hidden=128,  # hidden width of the 2-layer GELU MLP projector
  ))

  # Decoder LM of the Qwen2/Llama family.
  m.lm = ml_collections.ConfigDict(dict(
      vocab_size=512, width=64, depth=2, num_heads=4, num_kv_heads=2,
      head_dim=16, mlp_dim=128, rope_theta=10000.0, rms_eps=1e-6,
      qkv_bias=True, tie_embeddings=True, max_len=256))
  # Token id of the visual placeholder (the tokenizer reserves it); the
  # prompt holds num_visual_tokens(cfg) copies of it, replaced by the
  # visual tokens in order (per frame: global tokens, then face tokens).
  m.visual_token_id = 4
  # A per-frame event classifier on the visual tokens, trained from the
  # captions' events (config.train.event_loss_weight; event_supervision.py).
  # A training aid for towers trained from scratch; unused when generating.
  m.event_head = False
  # The same classifier on the face tower's output (config.train.
  # face_event_loss_weight; face_event_supervision.py), and the scale of the
  # caption loss's gradient into the face tower (1: all of it; 0: none, the
  # face event head alone trains the tower).
  m.face_event_head = False
  m.face_tower_grad = 1.0
  # A clip-level appearance classifier on the face tokens, trained from the
  # captions' appearance words (config.train.attribute_loss_weight;
  # attribute_supervision.py). A training aid too; unused when generating.
  m.attribute_head = False
  # The same classifier on the face tower's output (config.train.
  # face_attribute_loss_weight; face_attribute_supervision.py).
  m.face_attribute_head = False
  return m


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.model = get_model_config()
  # (data, fsdp, tensor); dcn_shape: processes along each axis (product = the
  # process count; () = jax.make_mesh's layout), e.g. (1, 1, 2): tensor across
  # 2 hosts, which then load identical data (sharding.mesh_from_config).
  config.mesh = ml_collections.ConfigDict(dict(shape=(-1, 1, 1), dcn_shape=()))
  config.seed = 0
  return config
