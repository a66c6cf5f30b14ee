"""Caption-derived event supervision of the visual tokens (an optional
training aid; ``config.model.event_head`` / ``config.train.event_loss_weight``).

Why. With towers trained from scratch (the synthetic demo has no SigLIP to
import), the caption loss alone reaches the face tower only through the LM's
attention, which starts out uniform over all T*(G+K) visual tokens: the
gradient that says "the brows of frames 0-1 matter" is averaged with every
other frame's, and the towers learn appearance (what each clip's first
sentence says) but not the events. Measured on the demo's synthetic set
(2026-12-02, 1,000 steps): a probe reading the caption's per-phase events
through the same face tower + a 3-layer transformer reached ROC AUC 0.60,
the same tower with this per-frame head 0.84; in the demo itself, adding
this loss moved held-out AutoDQ 0.18 -> 0.52 and TEM 0.15 -> 0.45 (README).

What. Each caption's events are read with the offline judge's extractor
(:func:`facetrack_jax.metrics.judge_offline.all_events`: the same one that
scores TEM / AutoDQ; works on FEC-Bench captions too), as a multi-hot
``float32[P, E]`` over the four narrative phases and the event vocabulary
``EVENT_KEYS``. A linear head on every frame's visual tokens gives
``float[B, T, E]`` logits; a phase's logit is the max over its frames
(multiple-instance learning: the caption says which phase, not which frame);
the loss is the mean sigmoid cross-entropy. The head is not used to
generate: the LM still has to learn to say what the tokens show.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from facetrack_jax.events import PHASES, SYNTHETIC_EVENTS

EVENT_KEYS: tuple[str, ...] = tuple(SYNTHETIC_EVENTS)
NUM_PHASES = len(PHASES)
_EVENT_INDEX = {k: i for i, k in enumerate(EVENT_KEYS)}


def loss_weight(config) -> float:
  """``config.train.event_loss_weight`` (0 when absent, e.g. input-only configs)."""
  return float((config.get("train") or {}).get("event_loss_weight", 0.0))


def target_spec() -> tuple[str, tuple[int, ...]]:
  """dtype and per-clip shape of :func:`caption_targets`: float32[P, E]."""
  return "float32", (NUM_PHASES, len(EVENT_KEYS))


def caption_targets(caption: str) -> np.ndarray:
  """``float32[P, E]``: 1 where the caption narrates event ``EVENT_KEYS[e]``
  in phase ``PHASES[p]``. Events outside the vocabulary or without a phase
  are left out."""
  from facetrack_jax.metrics.judge_offline import all_events  # the metrics' lexicon
  y_pe = np.zeros((NUM_PHASES, len(EVENT_KEYS)), np.float32)
  for e in all_events(caption):
    if e.phase in PHASES and e.key() in _EVENT_INDEX:
      y_pe[PHASES.index(e.phase), _EVENT_INDEX[e.key()]] = 1.0
  return y_pe


def phase_of_frames(num_frames: int) -> np.ndarray:
  """``int32[T]``: the phase of each sampled frame (T split into P equal runs)."""
  if num_frames < NUM_PHASES:
    raise ValueError(f"event supervision needs >= {NUM_PHASES} frames, got {num_frames}")
  bounds = [round(i * num_frames / NUM_PHASES) for i in range(NUM_PHASES + 1)]
  return np.concatenate([np.full(b - a, p, np.int32)
                         for p, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))])


def phase_logits(frame_logits_bte: jax.Array) -> jax.Array:
  """``float[B, T, E] -> float[B, P, E]``: max over each phase's frames."""
  phase_t = phase_of_frames(frame_logits_bte.shape[1])
  return jnp.stack([frame_logits_bte[:, phase_t == p].max(axis=1)
                    for p in range(NUM_PHASES)], axis=1)


def loss_sum(frame_logits_bte: jax.Array, targets_bpe: jax.Array) -> jax.Array:
  """Σ sigmoid cross-entropy over (B, P, E) of the phase logits (fp32)."""
  z_bpe = phase_logits(frame_logits_bte.astype(jnp.float32))
  y_bpe = targets_bpe.astype(jnp.float32)
  # log(1 + e^z) - y z, stably.
  return jnp.sum(jax.nn.softplus(z_bpe) - y_bpe * z_bpe)
