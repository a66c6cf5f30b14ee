r"""Can the face tower see each scripted event in the built face crops?

    python -m benchmarks.face_visibility --data-dir data/tfds \
        --name facetrack/synthetic_train1200_test120 \
        --ground-truth data/tfds/downloads/facetrack_synthetic_n1320_seed0/ground_truth \
        [--labels frames|captions|attributes] [--steps 1000] [--out benchmarks/results/face_visibility.json]

A check of the DATA, not of the captioner: the demo's face ViT (the face
tower of ``configs/tiny_synthetic.py`` at the demo's full size) plus a
linear head is trained with direct supervision -- for every sampled frame
with a face, which of the generator's events (``events.SYNTHETIC_EVENTS``)
is active there (ground truth) -- on the train split's crops, and scored on
the test split's by ROC AUC per event. AUC near 1: the crops show the
event; near 0.5: the crops do not, and no captioner can learn it. Writes the
table to ``<out>`` (JSON) and beside it (Markdown).

``--labels captions`` trains the same tower on what the captioner's event
loss sees instead (``facetrack_jax/event_supervision.py``): per clip, the
caption's narrated events per phase, a phase's logit the max over its
frames with a face; the AUC is still per frame against the ground truth.
So it says whether the caption-derived targets can teach an event to a
tower that has no caption loss to share its updates with.

``--labels attributes`` asks the same of appearance: the tower and a linear
head are trained on the main character's ground-truth attributes (gender,
age, hair colour and length, skin tone, glasses, beard; the values of
``attribute_supervision.ATTRIBUTE_VALUES``) on every face frame, with that
module's loss, and scored on the test split per frame and per clip (the mean
logits over the clip's face frames) by accuracy against the majority-class
prior. Not a bound of the crops: trained on appearance alone, without
augmentation, the probe fits the training people, and the captioner's own
face head reads gender and age better (benchmarks/reading_the_face.md);
``benchmarks/attribute_cues.py`` bounds what the coarse cues give.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np

from benchmarks.common import write_result
from data_prep.video import sample_indices
from facetrack_jax.events import SYNTHETIC_EVENTS
from facetrack_jax.head_readout import roc_auc

KEYS = tuple(k for k in sorted(SYNTHETIC_EVENTS) if k != "mouth_close")  # an onset, no state


def frame_labels(gt: dict, num_samples: int) -> np.ndarray:
  """float32[T, len(KEYS)]: event k active at sampled frame t (the builder's
  uniform sampler over the clip's ``num_frames``)."""
  t = sample_indices(gt["num_frames"], num_samples)
  y = np.zeros((num_samples, len(KEYS)), np.float32)
  for e in gt["events"]:
    if e["key"] in KEYS:
      j = KEYS.index(e["key"])
      y[:, j] = np.maximum(y[:, j], (t >= e["start"]) & (t < e["end"]))
  return y


def attribute_labels(gt: dict) -> np.ndarray:
  """int32[A]: the main character's ground-truth value of each attribute, as
  its index in ``attribute_supervision.ATTRIBUTE_VALUES``."""
  from facetrack_jax.attribute_supervision import ATTRIBUTE_VALUES
  a = gt["faces"][gt["main"]]["attributes"]
  value = lambda v: ("yes" if v else "no") if isinstance(v, bool) else v
  return np.array([values.index(value(a[k])) for k, values in ATTRIBUTE_VALUES.items()],
                  np.int32)


def load_split(name: str, data_dir: str, split: str, gt_dir: pathlib.Path,
               by_clip: bool = False, attributes: bool = False):
  """(uint8[N, S, S, 3] crops of frames with a face, float32[N, K] labels);
  ``by_clip``: (uint8[C, T, S, S, 3] crops, float32[C, T, K] labels, bool[C, T]
  face masks, float32[C, P, E] caption targets) instead; ``attributes``:
  (crops, int32[N, A] :func:`attribute_labels`, int32[N] clip index)."""
  import tensorflow_datasets as tfds
  from facetrack_jax.input_pipeline import _images, _text
  src = tfds.data_source(name, data_dir=data_dir, split=split)
  crops, labels, masks, targets, clip_ids = [], [], [], [], []
  for i in range(len(src)):
    ex = src[i]
    cid = _text(ex["id"])
    gt_file = gt_dir / f"{cid}.json"
    if not gt_file.exists():
      raise FileNotFoundError(f"no ground truth for clip {cid!r}: {gt_file}")
    faces = _images(ex["faces"], "faces", cid)
    mask = np.asarray(ex["face_mask"]).astype(bool)
    gt = json.loads(gt_file.read_text())
    if attributes:
      crops.append(faces[mask])
      labels.append(np.repeat(attribute_labels(gt)[None], int(mask.sum()), axis=0))
      clip_ids.append(np.full(int(mask.sum()), i, np.int32))
      continue
    y = frame_labels(gt, len(faces))
    if by_clip:
      from facetrack_jax.event_supervision import caption_targets
      crops.append(faces)
      labels.append(y)
      masks.append(mask)
      targets.append(caption_targets(_text(ex["caption"])))
    else:
      crops.append(faces[mask])
      labels.append(y[mask])
  if by_clip:
    return tuple(map(np.stack, (crops, labels, masks, targets)))
  if attributes:
    return np.concatenate(crops), np.concatenate(labels), np.concatenate(clip_ids)
  return np.concatenate(crops), np.concatenate(labels)


def train_probe(face_vit_cfg, x_train, y_train, x_test, steps: int, batch: int, seed: int = 0,
                mask_train=None):
  """Trains face ViT + mean pool + linear on BCE; returns test logits
  float[N, outputs]. ``mask_train`` (bool[C, T]): ``x_train`` are clips
  uint8[C, T, S, S, 3] and ``y_train`` caption targets float[C, P, E]; the
  loss is on each phase's max over its frames with a face, as in training
  (``batch`` then counts clips). Integer ``y_train`` int32[N, A]: attribute
  classes, ``attribute_supervision``'s loss and ``NUM_CLASSES`` outputs."""
  import jax.numpy as jnp
  import optax
  from flax import nnx
  from tqdm import tqdm

  from facetrack_jax import attribute_supervision, sharding
  from facetrack_jax.models.vit import ViT, preprocess

  by_class = np.issubdtype(y_train.dtype, np.integer)
  outputs = attribute_supervision.NUM_CLASSES if by_class else y_train.shape[-1]

  class Probe(nnx.Module):
    def __init__(self, rngs):
      self.vit = ViT(face_vit_cfg, rngs=rngs)
      self.head = nnx.Linear(face_vit_cfg.width, outputs, rngs=rngs)

    def __call__(self, x_bssc):
      return self.head(self.vit(preprocess(x_bssc)).mean(axis=1))   # float[B, K]

  with sharding.use_mesh(sharding.make_mesh((1, 1, 1))):
    model = Probe(nnx.Rngs(seed))
    opt = nnx.Optimizer(model, optax.adamw(1e-3), wrt=nnx.Param)

    def frame_loss(m, x, y, _):
      return optax.sigmoid_binary_cross_entropy(m(x), y).mean()

    def phase_loss(m, x_btssc, y_bpe, mask_bt):
      from facetrack_jax.event_supervision import NUM_PHASES, phase_of_frames
      b, t = x_btssc.shape[:2]
      z_bte = m(x_btssc.reshape(b * t, *x_btssc.shape[2:])).reshape(b, t, -1)
      z_bte = jnp.where(mask_bt[..., None], z_bte, -1e9)
      phase_t = phase_of_frames(t)
      z_bpe = jnp.stack([z_bte[:, phase_t == p].max(axis=1) for p in range(NUM_PHASES)], 1)
      seen_bp = jnp.stack([mask_bt[:, phase_t == p].any(axis=1) for p in range(NUM_PHASES)], 1)
      z_bpe = jnp.where(seen_bp[..., None], z_bpe, 0.0)
      ce_bpe = optax.sigmoid_binary_cross_entropy(z_bpe, y_bpe) * seen_bp[..., None]
      return ce_bpe.sum() / jnp.maximum(seen_bp.sum() * y_bpe.shape[-1], 1)

    def class_loss(m, x, y, _):
      return attribute_supervision.loss_sum(m(x), y) / y.size

    loss_of = class_loss if by_class else frame_loss if mask_train is None else phase_loss

    @nnx.jit
    def step(model, opt, x, y, mask):
      def loss_fn(m):
        return loss_of(m, x, y, mask)
      loss, grads = nnx.value_and_grad(loss_fn)(model)
      opt.update(model, grads)
      return loss

    rng = np.random.default_rng(seed)
    bar = tqdm(range(steps), desc="face probe", unit="step")
    for s in bar:
      idx = rng.integers(0, len(x_train), batch)
      mask = None if mask_train is None else jnp.asarray(mask_train[idx])
      loss = step(model, opt, jnp.asarray(x_train[idx]), jnp.asarray(y_train[idx]), mask)
      if s % 50 == 0:
        bar.set_postfix(loss=f"{float(loss):.4f}")
    predict = nnx.jit(lambda m, x: m(x))
    return np.concatenate([np.asarray(predict(model, jnp.asarray(x_test[i:i + 512])))
                           for i in range(0, len(x_test), 512)])


def attribute_scores(logits_nc: np.ndarray, y_na: np.ndarray, clip_n: np.ndarray) -> dict:
  """``{attribute: {"frame_accuracy", "clip_accuracy", "prior", "clips"}}``:
  argmax accuracy per face frame and per clip (mean logits over its frames)
  against the majority value's share of the clips."""
  from facetrack_jax.attribute_supervision import ATTRIBUTE_VALUES, OFFSETS
  clips = np.unique(clip_n)
  first = np.array([np.flatnonzero(clip_n == c)[0] for c in clips])
  clip_z = np.stack([logits_nc[clip_n == c].mean(axis=0) for c in clips])
  out = {}
  for a, (name, values) in enumerate(ATTRIBUTE_VALUES.items()):
    sl = slice(OFFSETS[a], OFFSETS[a] + len(values))
    y_c = y_na[first, a]
    out[name] = {"frame_accuracy": float(np.mean(logits_nc[:, sl].argmax(1) == y_na[:, a])),
                 "clip_accuracy": float(np.mean(clip_z[:, sl].argmax(1) == y_c)),
                 "prior": float(np.bincount(y_c).max() / len(y_c)), "clips": int(len(clips))}
  return out


def _attributes_report(a, face_cfg, gt, t0, test) -> int:
  x_te, y_te, c_te = test
  x_tr, y_tr, c_tr = load_split(a.name, a.data_dir, "train", gt, attributes=True)
  rows = attribute_scores(train_probe(face_cfg, x_tr, y_tr, x_te, a.steps, a.batch), y_te, c_te)
  result = {"dataset": a.name, "labels": a.labels, "face_size": int(x_te.shape[1]),
            "train_frames": f"{len(x_tr)} ({len(np.unique(c_tr))} clips)",
            "test_frames": f"{len(x_te)} ({len(np.unique(c_te))} clips)", "steps": a.steps,
            "batch": a.batch, "seconds": round(time.perf_counter() - t0, 1), "attributes": rows}
  lines = [f"# Face-crop visibility of the main character's appearance: {a.name}\n",
           f"{result['train_frames']} train / {result['test_frames']} test face frames, "
           f"{x_te.shape[1]}-px crops, face ViT + linear, {a.steps} steps of {a.batch} frames, "
           "trained on the ground-truth attributes; accuracy on the test split per frame "
           "and per clip (mean logits over its face frames) against the majority value's "
           "share of the clips.\n",
           "| attribute | frame accuracy | clip accuracy | prior | clip lift |",
           "|---|---|---|---|---|"]
  lines += [f"| {k} | {r['frame_accuracy']:.3f} | {r['clip_accuracy']:.3f} | {r['prior']:.3f} | "
            f"{r['clip_accuracy'] - r['prior']:+.3f} |" for k, r in rows.items()]
  return write_result(a.out, result, lines)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog="python -m benchmarks.face_visibility",
                              description=__doc__.split("\n\n")[0])
  p.add_argument("--data-dir", required=True, help="TFDS data_dir of the built set")
  p.add_argument("--name", required=True, help="TFDS name, e.g. facetrack/synthetic_...")
  p.add_argument("--ground-truth", required=True, help="the generator's ground_truth/ folder")
  p.add_argument("--labels", choices=("frames", "captions", "attributes"), default="frames",
                 help="frames: the ground truth's per-frame events; captions: the "
                      "caption's events per phase, as the captioner's event loss; "
                      "attributes: the main character's ground-truth appearance")
  p.add_argument("--steps", type=int, default=1000)
  p.add_argument("--batch", type=int, default=256,
                 help="frames per step (clips of config.model.num_frames with --labels captions)")
  p.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"
                                      / "face_visibility.json"))
  a = p.parse_args(argv)
  from facetrack_jax import main as demo
  config = demo.demo_config("full")
  gt = pathlib.Path(a.ground_truth)
  t0 = time.perf_counter()
  test = load_split(a.name, a.data_dir, "test", gt, attributes=a.labels == "attributes")
  face_cfg = config.model.face_vit.copy_and_resolve_references()
  face_cfg.image_size = test[0].shape[1]
  if a.labels == "attributes":
    return _attributes_report(a, face_cfg, gt, t0, test)
  x_te, y_te = test
  if a.labels == "captions":
    from facetrack_jax.event_supervision import EVENT_KEYS
    x_tr, _, m_tr, y_tr = load_split(a.name, a.data_dir, "train", gt, by_clip=True)
    clips = a.batch // x_tr.shape[1]
    scores = train_probe(face_cfg, x_tr, y_tr, x_te, a.steps, clips, mask_train=m_tr)
    scores = scores[:, [EVENT_KEYS.index(k) for k in KEYS]]
    n_train = f"{int(m_tr.sum())} ({len(x_tr)} clips)"
  else:
    x_tr, y_tr = load_split(a.name, a.data_dir, "train", gt)
    scores = train_probe(face_cfg, x_tr, y_tr, x_te, a.steps, a.batch)
    n_train = len(x_tr)
  rows = {k: {"test_frames_active": int(y_te[:, j].sum()), "auc": roc_auc(scores[:, j], y_te[:, j])}
          for j, k in enumerate(KEYS)}
  result = {"dataset": a.name, "labels": a.labels, "face_size": int(x_te.shape[1]),
            "train_frames": n_train, "test_frames": len(x_te), "steps": a.steps, "batch": a.batch,
            "seconds": round(time.perf_counter() - t0, 1), "events": rows}
  lines = [f"# Face-crop visibility of each event: {a.name}\n",
           f"{n_train} train / {len(x_te)} test frames, {x_te.shape[1]}-px crops, "
           f"face ViT + linear, {a.steps} steps of {a.batch} frames, trained on the "
           f"{'ground truth per frame' if a.labels == 'frames' else 'captions per phase'}; "
           "ROC AUC on test frames.\n",
           "| event | active test frames | AUC |", "|---|---|---|"]
  lines += [f"| {k} | {r['test_frames_active']} | {r['auc']:.3f} |" for k, r in rows.items()]
  return write_result(a.out, result, lines)


if __name__ == "__main__":
  sys.exit(main())
