r"""Where along a trained captioner's face path is an event lost?

    python -m benchmarks.face_token_probe --sweep configs/sweeps/face_tokens.py \
        --run face_tokens=4,seed=2 --workdir W/face_tokens=4,seed=2 --data-dir D \
        --ground-truth D/tfds/downloads/facetrack_synthetic_n1320_seed0_takes1/ground_truth \
        [--out benchmarks/results/face_token_probe.json]

``benchmarks/face_visibility.py`` asks whether the face *crops* show each
scripted event (a face tower trained for exactly that). This asks the
captioner that was trained on the captions: for every sampled frame with a
face (train and test splits; labels: the generator's events active at that
frame, ground truth), the run's face path gives

* ``vit``: the face ViT's output, mean over patches, float[Dv];
* ``pooled``: the compressor's K pooled tokens, concatenated, float[K·Dv];
* ``tokens``: the K face tokens the LM reads (after the projector), float[K·D];

and a ridge-regression probe per event, fitted on the train split's frames,
scores the test split's by ROC AUC. An event the crops show (visibility AUC
high) but every stage here misses was not learned by the tower; one that
``vit`` keeps and ``tokens`` loses was lost in the compression. Writes
``<out>`` (JSON) and a Markdown table beside it.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np

STAGES = ("vit", "pooled", "tokens")


def face_features(model, crops: np.ndarray, chunk: int = 256) -> dict[str, np.ndarray]:
  """``{stage: float32[N, F]}`` of uint8 face crops [N, S, S, 3] through the
  model's face tower and face stream (no mask: every crop has a face)."""
  import jax
  from flax import nnx
  from facetrack_jax.models.compressor import grid_pool
  from facetrack_jax.models.vit import preprocess

  @nnx.jit
  def stages(model, x):
    tower = model.vit if model.face_vit is None else model.face_vit
    h_fnd = tower(preprocess(x, model.dtype))
    stream = model.face_stream
    p_fkd = grid_pool(h_fnd, stream.num_tokens) if stream.pool is None else stream.pool(h_fnd)
    t_fke = stream.proj(p_fkd.astype(stream.dtype))
    flat = lambda a: a.reshape(a.shape[0], -1).astype("float32")
    return {"vit": h_fnd.mean(axis=1).astype("float32"), "pooled": flat(p_fkd),
            "tokens": flat(t_fke)}

  out = {s: [] for s in STAGES}
  for i in range(0, len(crops), chunk):
    got = jax.device_get(stages(model, crops[i:i + chunk]))
    for s in STAGES:
      out[s].append(np.asarray(got[s]))
  return {s: np.concatenate(v) for s, v in out.items()}


def ridge_scores(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                 alpha: float = 1.0) -> np.ndarray:
  """Test scores float[N_test, E] of a ridge regression on standardised
  features (one linear probe per label column; alpha × mean feature
  variance (= 1) on the diagonal, times N)."""
  mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
  a, b = (x_train - mu) / sd, (x_test - mu) / sd
  a = np.concatenate([a, np.ones((len(a), 1))], axis=1)
  b = np.concatenate([b, np.ones((len(b), 1))], axis=1)
  reg = alpha * len(a) * np.eye(a.shape[1])
  reg[-1, -1] = 0.0                                   # no penalty on the bias
  w = np.linalg.solve(a.T @ a + reg, a.T @ (2 * y_train - 1))
  return b @ w


def main(argv=None) -> int:
  from benchmarks.common import add_run_args, run_config, write_result
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  add_run_args(p)
  p.add_argument("--ground-truth", required=True, help="the synthetic set's ground_truth/")
  p.add_argument("--alpha", type=float, default=0.01)
  p.add_argument("--out", default="benchmarks/results/face_token_probe.json")
  args = p.parse_args(argv)

  from benchmarks.face_visibility import KEYS, load_split
  from facetrack_jax import evaluate, sharding
  from facetrack_jax.head_readout import roc_auc
  t0 = time.perf_counter()
  config = run_config(p, args)
  if not config.model.compressor.face_tokens:
    p.error(f"--run {args.run!r} has no face tokens")
  mesh = sharding.mesh_from_config(config.mesh)
  model, step = evaluate.load_model(config, args.workdir, mesh)
  gt = pathlib.Path(args.ground_truth)
  tfds_dir = str(pathlib.Path(args.data_dir) / "tfds")
  feats, labels = {}, {}
  with sharding.use_mesh(mesh):
    for split in ("train", "test"):
      crops, labels[split] = load_split(config.data.name, tfds_dir, split, gt)
      print(f"[{split}] {len(crops)} face frames", file=sys.stderr, flush=True)
      feats[split] = face_features(model, crops)
  rows = {}
  for s in STAGES:
    scores = ridge_scores(feats["train"][s], labels["train"], feats["test"][s], args.alpha)
    for j, k in enumerate(KEYS):
      rows.setdefault(k, {})[s] = roc_auc(scores[:, j], labels["test"][:, j])
  result = dict(run=args.run, sweep=args.sweep, workdir=str(args.workdir), step=step,
                dataset=config.data.name, alpha=args.alpha,
                frames={k: len(v) for k, v in labels.items()},
                dims={s: int(feats["test"][s].shape[1]) for s in STAGES},
                auc=rows, seconds=time.perf_counter() - t0)
  lines = [f"# Linear probes along the face path: {args.run} (step {step})", "",
           f"{result['frames']['train']} train / {result['frames']['test']} test face frames, "
           f"ridge alpha {args.alpha}; test ROC AUC per event and stage "
           f"(dims {result['dims']}).", "",
           "| event | " + " | ".join(STAGES) + " |", "|---|" + "---|" * len(STAGES)]
  lines += [f"| {k} | " + " | ".join(f"{r[s]:.3f}" for s in STAGES) + " |"
            for k, r in rows.items()]
  return write_result(args.out, result, lines)


if __name__ == "__main__":
  sys.exit(main())
