"""``configs/paper.py`` with tiny shapes: the same sections, stages, chat
template and tower layout (shared SigLIP tower with its MAP head, untied
Qwen2 LM with q/k/v biases, scanned + rematerialised layers, bf16 compute),
small enough for CPU tests that import random tiny ``SiglipVisionModel`` /
``Qwen2ForCausalLM`` safetensors made by ``transformers`` (``config.init.vit``
and ``config.init.lm`` name their ``save_pretrained`` directories).

    python -m facetrack_jax.train --config configs/paper_tiny.py:stage1 --workdir W \
        --config.init.vit=V --config.init.lm=L --config.data.tokenizer=T ...

Clips: 4 frames of 32×32 (4×4 patches of 8 px, pooled to 2×2 = 4 tokens),
16×16 face crops through the same tower (2×2 patches, 4 tokens).
``visual_token_id`` must be the tokenizer's ``<|video_pad|>``: here 1013 =
Qwen2's special tokens in Qwen2's order (``<|endoftext|>`` … ``<|video_pad|>``
= base + 0 … base + 13) after a 1000-piece vocabulary
(``python -m facetrack_jax.tokenizer train --captions A.json --vocab-size 1000
--out T/tokenizer.json`` makes one; fewer pieces where the captions allow fewer
merges); override it for another tokenizer (the pipeline checks it, naming
both). ``tests/test_paper_gcs.py`` runs this config on 2 processes × 4 CPU
devices with everything on a local GCS emulator.
"""

import importlib.util
import pathlib


def _paper():
  spec = importlib.util.spec_from_file_location(
      "configs_paper", pathlib.Path(__file__).with_name("paper.py"))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def get_config(stage: str = "stage1"):
  paper = _paper()
  config = paper.get_config(stage)
  m = config.model
  m.num_frames, m.frame_size, m.face_size = 4, 32, 16
  m.vit.update(image_size=32, patch_size=8, width=64, depth=2, num_heads=2, mlp_dim=128,
               use_head=True)
  m.face_vit = m.vit.copy_and_resolve_references()
  m.compressor.update(face_tokens=4, global_tokens=4, projector_hidden=128)
  m.lm.update(vocab_size=1024, width=64, depth=2, num_heads=4, num_kv_heads=2, head_dim=16,
              mlp_dim=128, max_len=256)
  m.visual_token_id = 1013
  config.mesh.shape = (-1, 1, 1)
  config.data.update(name="facetrack/synthetic", max_len=192, batch_size=8,
                     tokenizer="data/tokenizer.json", num_threads=1, prefetch=2)
  if stage == "stage1":
    config.init.update(vit="weights/tiny_siglip", lm="weights/tiny_qwen2")
  else:
    config.init.checkpoint = "runs/paper_tiny_stage1/checkpoints"
  config.train.update(num_steps=20, warmup_steps=2, checkpoint_every=10)
  return config
