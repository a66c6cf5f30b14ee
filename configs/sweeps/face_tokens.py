r"""The face-token sweep: global view only vs global + K face tokens per frame,
and a larger face crop for the mouth events.

    python -m facetrack_jax.sweep --sweep configs/sweeps/face_tokens.py --workdir W

The paper's premise: with few visual tokens per frame the global view loses
facial detail, and a handful of tokens spent on the main character's face
track recovers it. Each run is the demo's model and training on its
synthetic set (``facetrack_jax.main``; the event loss included):

* K = ``model.compressor.face_tokens`` ∈ {0 (no face tower), 1, 4 (the
  demo's), 16} × 3 seeds (init and data order) on 32-px crops (patch 8: a
  4×4 grid, so K = 16 keeps every patch);
* 48-px crops (a 6×6 grid, the same K = 4) × 3 seeds: talking, frowning,
  smiling and lip pressing are still named at chance with 32-px crops.

Settings that follow a swept one (ml_collections field references, so they
follow ``--config.*`` overrides too): the sequence length grows with K so
every caption keeps the same room, the face ViT's position grid matches the
crop size, and the data order follows ``config.seed``.

Pinned: the demo as it was when this sweep was measured (2026-12-05..07),
before the face tower got its own event and appearance heads
(``face_event_supervision.py``, ``face_attribute_supervision.py``, on in the
demo since 2026-12-07; ``face_events.py`` and ``face_attributes.py`` measure
them at K = 4), with its face ViT at width 96 (192 in the demo since
``face_capacity.py``) and the token event loss at weight 1 (3 since
``event_weight_wide.py``). Those heads need a face tower, and K = 0 has none, so
this sweep keeps one setting for every K; ``event_weight.py`` and
``face_reading.py`` build on it.
"""

from facetrack_jax import main as demo
from facetrack_jax import sweep
from facetrack_jax.models.facetrack import num_visual_tokens

METRIC = "tem"


def get_config(size: str = "full"):
  config = demo.demo_config(size)
  m = config.model
  room = config.data.max_len - num_visual_tokens(m)    # prompt + caption
  headroom = m.lm.max_len - config.data.max_len         # for generation
  t, g = m.get_ref("num_frames"), m.compressor.get_ref("global_tokens")
  config.data.max_len = room + t * (g + m.compressor.get_ref("face_tokens"))
  m.lm.max_len = config.data.get_ref("max_len") + headroom
  m.face_vit.image_size = m.get_ref("face_size")
  config.data.shuffle_seed = config.get_ref("seed")
  m.face_event_head, config.train.face_event_loss_weight, m.face_tower_grad = False, 0.0, 1.0
  m.face_attribute_head, config.train.face_attribute_loss_weight = False, 0.0
  m.face_vit.update(width=96, num_heads=3, mlp_dim=192)
  config.train.event_loss_weight = 1.0
  return config


def get_sweep():
  k = sweep.axis("model.compressor.face_tokens", [0, 1, 4, 16])
  crop48 = [{"model.compressor.face_tokens": 4, "model.face_size": 48}]
  return sweep.product(k, sweep.seeds(3)) + sweep.product(crop48, sweep.seeds(3))
