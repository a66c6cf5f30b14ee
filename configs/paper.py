"""FaceTrack-MM at the paper's scale: SigLIP-so400m/14 @ 384 + Qwen2-7B, 8 frames.

    python -m facetrack_jax.train --config configs/paper.py:stage1 --workdir W1 \
        --config.init.vit=S --config.init.lm=Q --config.data.tokenizer=Q
    python -m facetrack_jax.train --config configs/paper.py:stage2 --workdir W2 \
        --config.init.checkpoint=W1/checkpoints --config.data.tokenizer=Q

Stages (``config.train.trainable``, frozen params keep no optimizer state):

* ``stage1`` (the default): the pretrained SigLIP tower and Qwen2 LM are
  imported from safetensors (``config.init.vit`` = a HF
  ``google/siglip-so400m-patch14-384`` snapshot, ``config.init.lm`` = a
  ``Qwen/Qwen2-7B`` snapshot) and frozen; the compressor streams (pooling,
  projectors) and the time embedding learn.
* ``stage2``: starts from stage 1's last params (``config.init.checkpoint``),
  the LM learns too (towers stay frozen).

Prompt: Qwen2's chat template (``facetrack_jax/prompt.py``: "qwen2"), the
visual tokens between ``<|vision_start|>`` and ``<|vision_end|>`` as
``<|video_pad|>`` placeholders (id 151656, as Qwen2-VL marks video input; the
clip is a video), the caption closed by ``<|im_end|>``. These pieces exist in
Qwen2.5's and Qwen2-VL's ``tokenizer.json`` at these ids; the tokenizer must
put them there (the pipeline checks ``visual_token_id`` against it).

The model is never materialised in tests — only abstractly: ``jax.eval_shape``
(``python -m facetrack_jax.models.summary --config configs/paper.py``) and the
AOT dry run on fake devices (``python -m facetrack_jax.dryrun --config
configs/paper.py --devices 256 --mesh fsdp=256``). On a machine without the
weights, training stops at config validation naming the missing ``init.*``
files (before anything is allocated).
Face crops go through the same SigLIP tower (shared_towers) at 224 px
(16×16 patches, position grid resampled), pooled to 16 tokens per frame;
global frames are pooled from 27×27 to 14×14 = 196 tokens per frame.
Layers are scanned (one compiled layer per stack) and fully rematerialised
(the README's layout study: the policy that fits on the most meshes).
"""

import importlib.util
import pathlib

# Parameter groups (facetrack_jax/optim.py matches them against param paths).
PROJECTORS = ("global_stream", "face_stream", "time_embedding")
STAGES = {
    "stage1": dict(trainable=PROJECTORS, learning_rate=1e-3, warmup_steps=100),
    "stage2": dict(trainable=PROJECTORS + ("lm",), learning_rate=2e-5, warmup_steps=100),
}


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
  m.visual_token_id = 151656   # <|video_pad|> (Qwen2-VL's video placeholder)
  return m


def apply_stage(config, stage: str):
  """Sets ``config.train`` (trainable groups, learning rate) and
  ``config.init`` for ``stage`` (:data:`STAGES`)."""
  if stage not in STAGES:
    raise ValueError(f"configs/paper.py: unknown stage {stage!r} (have {sorted(STAGES)}): "
                     "use --config configs/paper.py:stage1 or :stage2")
  config.train.update(STAGES[stage])
  if stage == "stage2":   # everything comes from stage 1's checkpoint
    config.init.update(vit="", face_vit="", lm="", checkpoint="runs/paper_stage1/checkpoints")
  return config


def get_config(stage: str = "stage1"):
  config = _sibling("tiny_synthetic").get_config()   # data, train, init, distributed sections
  config.model = get_model_config()
  config.mesh.shape = (1, -1, 1)   # FSDP over all devices
  config.data.update(
      name="facetrack/fecbench", data_dir="data/tfds",
      tokenizer="weights/Qwen2-7B",   # the snapshot directory: its tokenizer.json
      chat_template="qwen2",
      # 8 × (196 + 16) = 1,696 visual tokens + prompt and caption.
      max_len=2048, batch_size=256)
  config.init.update(vit="weights/siglip-so400m-patch14-384", face_vit="",
                     lm="weights/Qwen2-7B")
  config.train.update(num_steps=5000, checkpoint_every=500)
  return apply_stage(config, stage)
