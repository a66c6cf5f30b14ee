"""What the training heads read off the visual tokens of held-out clips.

The event and attribute heads (:mod:`facetrack_jax.caption_supervision`) are
training aids that generation never uses; scored on the evaluation split
they tell where a miss comes from. A caption that names glasses at the
majority rate while the attribute head reads them at 0.95 means the face
tokens carry them and the LM does not say them; a head at the prior means
the tokens do not carry them (then ``benchmarks/face_visibility.py`` tells
whether the crops do). ``evaluate`` writes the result as ``heads.json``:

* ``attribute`` (and ``face_attribute``, the same head on the face tower's
  output): per attribute, the head's accuracy on the clips whose
  reference states it, the majority-class prior and lift = accuracy − prior;
* ``event`` (and ``face_event``, the same head on the face tower's output):
  per event kind, the ROC AUC of the head's phase logit against "the
  reference narrates this event in this phase", over clips × phases (0.5 =
  the tokens do not tell it).
"""

from __future__ import annotations

from collections import Counter

import jax
import numpy as np
from flax import nnx

from facetrack_jax import attribute_supervision, event_supervision


def roc_auc(scores: np.ndarray, y: np.ndarray) -> float:
  """Mann-Whitney ROC AUC of ``scores`` for the positives ``y > 0`` (ties
  broken by order; fine for continuous scores); NaN without both classes."""
  ranks = np.empty(len(scores))
  ranks[np.argsort(scores, kind="stable")] = np.arange(len(scores))
  pos = np.asarray(y) > 0
  p, n = pos.sum(), (~pos).sum()
  return float((ranks[pos].sum() - p * (p - 1) / 2) / (p * n)) if p and n else float("nan")


@nnx.jit(static_argnames="heads")
def _head_logits(model, frames, faces, face_mask, heads):
  return model.head_logits(frames, faces, face_mask, heads)


def attribute_scores(logits_nc: np.ndarray, targets_na: np.ndarray) -> dict[str, dict]:
  """``{attribute: {"n", "accuracy", "prior", "lift"}}`` of the attribute
  head's argmax against the references' values (-1: not stated, left out)."""
  out = {}
  for a, (name, values) in enumerate(attribute_supervision.ATTRIBUTE_VALUES.items()):
    start = attribute_supervision.OFFSETS[a]
    y_n = targets_na[:, a]
    stated = y_n >= 0
    if not stated.any():
      out[name] = {"n": 0, "accuracy": None, "prior": None, "lift": None}
      continue
    pred_n = np.argmax(logits_nc[stated, start:start + len(values)], axis=1)
    accuracy = float(np.mean(pred_n == y_n[stated]))
    prior = Counter(y_n[stated].tolist()).most_common(1)[0][1] / int(stated.sum())
    out[name] = {"n": int(stated.sum()), "accuracy": accuracy, "prior": prior,
                 "lift": accuracy - prior}
  return out


def event_scores(frame_logits_nte: np.ndarray, targets_npe: np.ndarray) -> dict[str, dict]:
  """``{event: {"n_pos", "auc"}}``: ROC AUC of each phase's max frame logit
  (the loss's multiple-instance reading) over clips × phases."""
  z_npe = np.asarray(event_supervision.phase_logits(np.asarray(frame_logits_nte)))
  out = {}
  for e, key in enumerate(event_supervision.EVENT_KEYS):
    y, s = targets_npe[:, :, e].ravel(), z_npe[:, :, e].ravel()
    out[key] = {"n_pos": int(y.sum()), "auc": roc_auc(s, y)}
  return out


def readout(model, batches, heads: tuple[str, ...], mesh) -> dict[str, dict]:
  """Scores the model's training heads ``heads`` on every valid example of
  ``batches`` (``input_pipeline.make_eval_batches``; one process)."""
  from facetrack_jax import caption_supervision, input_pipeline, sharding
  if jax.process_count() != 1:
    raise NotImplementedError("head readout runs on one process (evaluate skips it on more)")
  logits, targets = {h: [] for h in heads}, {h: [] for h in heads}
  with sharding.use_mesh(mesh):
    for batch_np in batches:
      batch = input_pipeline.to_global(
          {k: batch_np[k] for k in ("frames", "faces", "face_mask")}, mesh)
      out = jax.device_get(_head_logits(model, batch["frames"], batch["faces"],
                                        batch["face_mask"], heads))
      valid = np.asarray(batch_np["valid"], bool)
      captions = [c.decode() if isinstance(c, bytes) else str(c)
                  for c, v in zip(np.asarray(batch_np["caption"]), valid) if v]
      read = [caption_supervision.caption_targets(heads, c) for c in captions]
      for h in heads:
        logits[h].append(np.asarray(out[h], np.float32)[valid])
        targets[h].extend(r[caption_supervision.targets_key(h)] for r in read)
  scorers = {"attribute": attribute_scores, "face_attribute": attribute_scores,
             "event": event_scores, "face_event": event_scores}
  return {h: scorers[h](np.concatenate(logits[h]), np.stack(targets[h])) for h in heads}


def _num(x, fmt: str) -> str:
  return "–" if x is None or x != x else format(x, fmt)


def heads_table(result: dict[str, dict], captions: dict[str, dict] | None = None) -> str:
  """Markdown: the heads' readings beside the captions' (``captions``: the
  ``per_attribute`` / ``per_event`` breakdowns of the same clips)."""
  captions = captions or {}
  lines = []
  attrs = [h for h in ("attribute", "face_attribute") if h in result]
  if attrs:
    cap = captions.get("attribute", {})
    lines += ["| attribute | clips | prior | "
              + " | ".join(f"{h} head accuracy (lift)" for h in attrs) + " | caption lift |",
              "|---|---|---|" + "---|" * len(attrs) + "---|"]
    for a, r in result[attrs[0]].items():
      c = (cap.get(a) or {}).get("lift")
      accs = " | ".join(f"{_num(result[h][a]['accuracy'], '.2f')} "
                        f"({_num(result[h][a]['lift'], '+.2f')})" for h in attrs)
      lines.append(f"| {a} | {r['n']} | {_num(r['prior'], '.2f')} | {accs} | {_num(c, '+.2f')} |")
    lines.append("")
  events = [h for h in ("event", "face_event") if h in result]
  if events:
    cap = captions.get("event", {})
    lines += ["| event | (clip, phase) positives | "
              + " | ".join(f"{h} head AUC" for h in events) + " | caption lift |",
              "|---|---|" + "---|" * len(events) + "---|"]
    for k, r in result[events[0]].items():
      c = (cap.get(k) or {}).get("lift")
      aucs = " | ".join(_num(result[h][k]["auc"], ".3f") for h in events)
      lines.append(f"| {k} | {r['n_pos']} | {aucs} | {_num(c, '+.2f')} |")
    lines.append("")
  return "\n".join(lines)
