"""FaceTrack-MM: global frame tokens + main-character face tokens + decoder LM.

The paper (arXiv 2501.07978) does not publish its architecture; this is our
reconstruction (README, "Model"). Per clip::

  frames uint8[B, T, H, W, 3] --fold T into B--> ViT           -> float[B*T, N, Dv]
      --grid pool to G tokens, 2-layer GELU projector-->          float[B, T, G, D]
  faces  uint8[B, T, S, S, 3] --fold--> face ViT (or the frame ViT when
      shared_towers)  --K tokens (avg | attn pool), projector;
      frames with face_mask False -> a learned "no face" embedding--> float[B, T, K, D]
  concat per frame [global, face] + learned time embedding of frame t
      -> visual tokens float[B, T*(G+K), D]
  tokens int32[B, L] hold T*(G+K) copies of visual_token_id: the visual
      tokens replace them in order; the LM sees [text; visual; text].

``compressor.face_tokens = 0`` is the global-only baseline of the paper's
comparison (no face tower is built). ``event_head = True`` adds a linear
per-frame event classifier on the visual tokens, ``face_event_head = True``
one on the face tower's output, ``attribute_head = True`` a linear appearance
classifier on the clip's face tokens, ``face_attribute_head = True`` one on the
face tower's output: training aids only (``facetrack_jax/caption_supervision.py``).
``face_tower_grad`` scales the caption loss's gradient into the face tower (1:
all of it; 0: none, so the tower learns from its own heads only;
``face_event_supervision.py``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from facetrack_jax import (attribute_supervision, event_supervision, face_event_supervision,
                           sharding)
from facetrack_jax.models.compressor import TimeEmbedding, VisualStream
from facetrack_jax.models.lm import LM
from facetrack_jax.models.vit import ViT, preprocess


class Visual(NamedTuple):
  """What the visual side gives one batch of clips."""
  tokens_bnd: jax.Array        # float[B, T*(G+K), D]: the LM's visual tokens
  frames_btkd: jax.Array       # float[B, T, G+K, D]: the same per frame, before the time embedding
  face_btd: jax.Array | None   # float[B, T, Df]: the face tower's mean output token per frame
  face_mask_bt: jax.Array      # bool[B, T]: frames with a face


def num_visual_tokens(model_cfg: ml_collections.ConfigDict) -> int:
  """Visual tokens per clip: T × (global tokens + face tokens), ordered per
  frame t as [global tokens of t, face tokens of t]."""
  c = model_cfg.compressor
  return model_cfg.num_frames * (c.global_tokens + c.face_tokens)


def splice(text_bld: jax.Array, visual_bnd: jax.Array, is_visual_bl: jax.Array) -> jax.Array:
  """Replaces the embeddings at visual placeholders by the visual tokens, in order.

  text: float[B, L, D]; visual: float[B, N, D]; is_visual: bool[B, L] with
  exactly N True per row (the prompt builder guarantees it). Rows may be
  left- or right-padded: the k-th placeholder of a row takes visual token k.
  """
  idx_bl = jnp.clip(jnp.cumsum(is_visual_bl, axis=1) - 1, 0, visual_bnd.shape[1] - 1)
  picked_bld = jnp.take_along_axis(visual_bnd, idx_bl[..., None], axis=1)
  return jnp.where(is_visual_bl[..., None], picked_bld.astype(text_bld.dtype), text_bld)


class FaceTrackMM(nnx.Module):
  """The full model. Build it inside ``sharding.use_mesh(mesh)``."""

  def __init__(self, cfg: ml_collections.ConfigDict, *, rngs: nnx.Rngs):
    dtype, param_dtype = jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype)
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    # Towers and LM: layers unrolled or scanned, rematerialised by policy name,
    # attention through the einsums or jax.nn.dot_product_attention.
    stack = dict(scan_layers=cfg.get("scan_layers", False), remat=cfg.get("remat", "none"),
                 attention=cfg.get("attention", "auto"))
    c = cfg.compressor
    self.num_frames, self.visual_token_id = cfg.num_frames, cfg.visual_token_id
    self.global_tokens, self.face_tokens = c.global_tokens, c.face_tokens
    self.dtype = dtype

    self.vit = ViT(cfg.vit, **kw, **stack)
    self.global_stream = VisualStream(cfg.vit, kind="avg", num_tokens=c.global_tokens,
                                      lm_width=cfg.lm.width,
                                      projector_hidden=c.projector_hidden, **kw)
    has_face = c.face_tokens > 0
    face_cfg = cfg.vit if cfg.shared_towers else cfg.face_vit
    self.face_tower_grad = float(cfg.get("face_tower_grad", 1.0))
    if not 0.0 <= self.face_tower_grad <= 1.0:
      raise ValueError(f"config.model.face_tower_grad must be in [0, 1], got "
                       f"{self.face_tower_grad}")
    if not has_face and (cfg.get("face_event_head", False) or self.face_tower_grad != 1.0
                         or cfg.get("face_attribute_head", False)):
      raise ValueError("config.model.face_event_head / face_attribute_head / face_tower_grad "
                       "< 1 need a face tower (config.model.compressor.face_tokens > 0)")
    # None: no face tower (face_tokens == 0) or the frame ViT serves both.
    self.face_vit = nnx.data(ViT(cfg.face_vit, **kw, **stack)
                             if has_face and not cfg.shared_towers else None)
    self.face_stream = nnx.data(
        VisualStream(face_cfg, kind=c.face_pool, num_tokens=c.face_tokens,
                     lm_width=cfg.lm.width, projector_hidden=c.projector_hidden,
                     masked=True, attention=stack["attention"], **kw) if has_face else None)
    self.time_embedding = TimeEmbedding(cfg.num_frames, cfg.lm.width,
                                        param_dtype=param_dtype, rngs=rngs)
    # The training heads (None when off), each a linear map out of one width:
    def head(on: str, width: int, outputs: int, axis: str):
      if not cfg.get(on, False):
        return None
      return nnx.Linear(
          width, outputs, dtype=dtype, param_dtype=param_dtype, rngs=rngs,
          kernel_init=nnx.with_partitioning(nnx.initializers.lecun_normal(), ("embed", axis)),
          bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), (axis,)))
    n_events, n_values = len(event_supervision.EVENT_KEYS), attribute_supervision.NUM_CLASSES
    # "btd,de->bte": mean visual token of each frame -> event logits.
    self.event_head = nnx.data(head("event_head", cfg.lm.width, n_events, "events"))
    # "btd,de->bte": the face tower's mean output token of each frame -> event logits.
    self.face_event_head = nnx.data(head("face_event_head", face_cfg.width, n_events, "events"))
    # "bd,dc->bc": the clip's mean face token -> every attribute's value logits.
    self.attribute_head = nnx.data(
        head("attribute_head", cfg.lm.width, n_values, "attribute_values"))
    # "bd,dc->bc": the face tower's mean output over the frames with a face ->
    # every attribute's value logits.
    self.face_attribute_head = nnx.data(
        head("face_attribute_head", face_cfg.width, n_values, "attribute_values"))
    self.lm = LM(cfg.lm, **kw, **stack)

  def encode_visual(self, frames_bthwc: jax.Array, faces_btssc: jax.Array,
                    face_mask_bt: jax.Array) -> jax.Array:
    """uint8 frames [B, T, H, W, 3], uint8 faces [B, T, S, S, 3], bool mask
    [B, T] -> visual tokens float[B, T*(G+K), D_lm]."""
    return self._visual(frames_bthwc, faces_btssc, face_mask_bt).tokens_bnd

  def _visual(self, frames_bthwc, faces_btssc, face_mask_bt) -> Visual:
    b, t = frames_bthwc.shape[:2]
    if t != self.num_frames:
      raise ValueError(f"FaceTrackMM: got {t} frames, the model is built for {self.num_frames}")
    frames_fhwc = preprocess(frames_bthwc.reshape(b * t, *frames_bthwc.shape[2:]), self.dtype)
    g_fgd = self.global_stream(self.vit(frames_fhwc))
    parts = [g_fgd.reshape(b, t, self.global_tokens, -1)]
    face_btd = None
    if self.face_stream is not None:
      if faces_btssc.shape[:2] != (b, t) or face_mask_bt.shape != (b, t):
        raise ValueError(f"FaceTrackMM: faces {faces_btssc.shape} and face_mask "
                         f"{face_mask_bt.shape} must lead with (B, T) = {(b, t)}")
      faces_fssc = preprocess(faces_btssc.reshape(b * t, *faces_btssc.shape[2:]), self.dtype)
      tower = self.vit if self.face_vit is None else self.face_vit
      x_fnd = tower(faces_fssc)
      face_btd = x_fnd.mean(axis=1).reshape(b, t, -1)   # "fnd->fd" mean token, per frame
      if self.face_tower_grad < 1.0:   # the same values; the caption loss's gradient × a
        held_fnd = jax.lax.stop_gradient(x_fnd)
        x_fnd = held_fnd + self.face_tower_grad * (x_fnd - held_fnd)
      f_fkd = self.face_stream(x_fnd, mask=face_mask_bt.reshape(b * t))
      parts.append(f_fkd.reshape(b, t, self.face_tokens, -1))
    u_btkd = jnp.concatenate(parts, axis=2)
    v_btkd = self.time_embedding(u_btkd)
    v_bnd = v_btkd.reshape(b, -1, v_btkd.shape[-1])
    return Visual(sharding.constrain(v_bnd, ("batch", "length", "act_embed")), u_btkd,
                  face_btd, face_mask_bt)

  def event_logits(self, u_btkd: jax.Array) -> jax.Array:
    """Per-frame tokens float[B, T, G+K, D] -> event logits float[B, T, E]."""
    if self.event_head is None:
      raise ValueError("FaceTrackMM.event_logits: the model was built with event_head=False")
    return self.event_head(u_btkd.mean(axis=2))

  def face_event_logits(self, face_btd: jax.Array, face_mask_bt: jax.Array) -> jax.Array:
    """The face tower's per-frame mean token float[B, T, Df] -> event logits
    float[B, T, E]; frames without a face give ``NO_FACE_LOGIT``, so a
    phase's max (the loss's reading) comes from the frames with a face."""
    if self.face_event_head is None:
      raise ValueError("FaceTrackMM.face_event_logits: the model was built with "
                       "face_event_head=False")
    z_bte = self.face_event_head(face_btd)
    return jnp.where(face_mask_bt[..., None], z_bte, face_event_supervision.NO_FACE_LOGIT)

  def attribute_logits(self, u_btkd: jax.Array) -> jax.Array:
    """Per-frame tokens float[B, T, G+K, D] -> attribute value logits float[B, C]
    (``attribute_supervision.OFFSETS``) from the mean face token over frames
    (over all tokens when the model has no face tokens)."""
    if self.attribute_head is None:
      raise ValueError("FaceTrackMM.attribute_logits: the model was built with "
                       "attribute_head=False")
    face_btkd = u_btkd[:, :, self.global_tokens:] if self.face_tokens else u_btkd
    return self.attribute_head(face_btkd.mean(axis=(1, 2)))

  def face_attribute_logits(self, face_btd: jax.Array, face_mask_bt: jax.Array) -> jax.Array:
    """The face tower's per-frame mean token float[B, T, Df] -> attribute value
    logits float[B, C] from its mean over the frames with a face (a clip with
    none: the bias alone)."""
    if self.face_attribute_head is None:
      raise ValueError("FaceTrackMM.face_attribute_logits: the model was built with "
                       "face_attribute_head=False")
    w_bt1 = face_mask_bt[..., None].astype(face_btd.dtype)
    # "btd,bt->bd": mean over the frames that show the face.
    mean_bd = (face_btd * w_bt1).sum(axis=1) / jnp.maximum(w_bt1.sum(axis=1), 1.0)
    return self.face_attribute_head(mean_bd)

  def head_logits(self, frames, faces, face_mask, heads) -> dict[str, jax.Array]:
    """``{name: logits}`` of the training heads ``heads`` on clips (no text)."""
    return self.aux_logits(self._visual(frames, faces, face_mask), heads)

  def aux_logits(self, visual: Visual, heads) -> dict[str, jax.Array]:
    """``{name: logits}`` of the training heads ``heads`` ("event",
    "face_event", "attribute", "face_attribute")."""
    fns = {"event": lambda v: self.event_logits(v.frames_btkd),
           "face_event": lambda v: self.face_event_logits(v.face_btd, v.face_mask_bt),
           "attribute": lambda v: self.attribute_logits(v.frames_btkd),
           "face_attribute": lambda v: self.face_attribute_logits(v.face_btd, v.face_mask_bt)}
    unknown = set(heads) - set(fns)
    if unknown:
      raise ValueError(f"FaceTrackMM: no training head {sorted(unknown)}; have {sorted(fns)}")
    return {name: fns[name](visual) for name in heads}

  def embed(self, frames, faces, face_mask, tokens_bl: jax.Array) -> jax.Array:
    """Text embeddings with the visual tokens spliced in: float[B, L, D]."""
    return self._embed(frames, faces, face_mask, tokens_bl)[0]

  def _embed(self, frames, faces, face_mask, tokens_bl):
    text_bld = self.lm.embed(tokens_bl)
    visual = self._visual(frames, faces, face_mask)
    return splice(text_bld, visual.tokens_bnd, tokens_bl == self.visual_token_id), visual

  def __call__(self, frames, faces, face_mask, tokens_bl: jax.Array, *,
               mask_bl: jax.Array | None = None, aux=()):
    """Teacher-forced logits float32[B, L, V] for right-padded ``tokens``;
    with training heads ``aux`` (e.g. ("event",)) also their logits,
    ``{name: logits}`` of :meth:`aux_logits` (same forward pass).

    ``mask_bl`` (bool[B, L], True = real token) is optional: with right
    padding, causal attention already keeps pads out of every real position.
    """
    h_bld, aux_logits = self.features(frames, faces, face_mask, tokens_bl, mask_bl=mask_bl,
                                      aux=aux)
    logits_blv = self.lm.logits(h_bld)
    return (logits_blv, aux_logits) if aux else logits_blv

  def features(self, frames, faces, face_mask, tokens_bl: jax.Array, *,
               mask_bl: jax.Array | None = None, aux=()):
    """The LM's final hidden states float[B, L, D] (after its last norm, before
    the head; the train step applies the head only where the loss is) and the
    training heads' logits ``{name: logits}`` for ``aux`` (empty without)."""
    x_bld, visual = self._embed(frames, faces, face_mask, tokens_bl)
    positions_bl = jnp.broadcast_to(jnp.arange(tokens_bl.shape[1]), tokens_bl.shape)
    h_bld, _ = self.lm.backbone(x_bld, positions_bl, mask_bl=mask_bl)
    return h_bld, self.aux_logits(visual, aux)

  @property
  def num_visual_tokens(self) -> int:
    """Visual placeholders per prompt (:func:`num_visual_tokens`)."""
    return self.num_frames * (self.global_tokens + self.face_tokens)


@nnx.jit
def _prompt_embeddings(model: FaceTrackMM, frames, faces, face_mask, tokens_bl):
  return model.embed(frames, faces, face_mask, tokens_bl)


def generate_captions(model: FaceTrackMM, frames, faces, face_mask, prompt_bl: jax.Array,
                      prompt_mask_bl: jax.Array, **generate_kwargs) -> jax.Array:
  """Captions for a batch of clips: int32[B, max_new_tokens].

  ``prompt_bl`` int32[B, P] left-padded (``prompt_mask_bl`` False on the
  padding) holds the visual placeholders; keyword arguments go to
  :func:`facetrack_jax.generate.generate` (max_new_tokens, eos_id, …).
  """
  from facetrack_jax.generate import generate  # generate imports the LM only
  x_bld = _prompt_embeddings(model, frames, faces, face_mask, prompt_bl)
  return generate(model.lm, x_bld, prompt_mask_bl, **generate_kwargs)
