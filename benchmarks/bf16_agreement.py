r"""bf16 weights against fp32 on a trained captioner (issue 19, part 2).

    python -m benchmarks.bf16_agreement --sweep configs/sweeps/face_events.py \
        --run face_event_head=True,face_event_loss_weight=1.0,face_tower_grad=0.1,seed=0 \
        --workdir W/<run> --data-dir D [--split test] \
        [--out benchmarks/results/bf16_agreement.json]

The unit test (``tests/test_evaluate.py``) measures agreement on a 20-step
model whose greedy choices are often near ties. This measures it on a
trained run: its fp32 checkpoint restored twice (``evaluate.load_model``,
fp32 and ``weights_dtype="bfloat16"``: bf16 weights, compute and KV cache),
both captioning the same split, and reports

* ``free_running``: greedy captions' token agreement position by position
  (the test's measure; one flip shifts the rest of a caption), in order
  (longest common subsequence), and the share of captions that are identical;
* ``teacher_forced``: on the references (the same prefix for both), the
  share of caption positions where the two models' argmax agree, and each
  one's next-token accuracy: the per-decision agreement, free of the
  compounding above;
* ``logits``: max |Δ| against the fp32 logits' range;
* each dtype's CIDEr / ROUGE-L / AutoDQ / TEM (``evaluate.score``).

Writes ``<out>`` (JSON) and a Markdown table beside it.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

DTYPES = ("float32", "bfloat16")


def token_agreement(a_rows: list[list[int]], b_rows: list[list[int]]) -> tuple[int, int]:
  """``(same, total)``: positions where two token rows agree, over the longer
  row of each pair (a missing position disagrees)."""
  same = total = 0
  for a, b in zip(a_rows, b_rows, strict=True):
    total += max(len(a), len(b))
    same += sum(x == y for x, y in zip(a, b))
  return same, total


def _logits(model, frames, faces, face_mask, tokens):
  """Teacher-forced logits float32[B, L, V] (jitted once per model)."""
  return model(frames, faces, face_mask, tokens)


def lcs_agreement(a_rows: list[list[int]], b_rows: list[list[int]]) -> tuple[int, int]:
  """``(Σ LCS, Σ longer length)``: tokens two rows share in order (longest
  common subsequence), so a word inserted early does not count every later
  token as a disagreement."""
  same = total = 0
  for a, b in zip(a_rows, b_rows, strict=True):
    prev = [0] * (len(b) + 1)
    for x in a:
      cur = [0]
      for j, y in enumerate(b):
        cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
      prev = cur
    same += prev[-1]
    total += max(len(a), len(b))
  return same, total


def main(argv=None) -> int:
  from benchmarks.common import add_run_args, run_config, write_result
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  add_run_args(p)
  p.add_argument("--split", default="test")
  p.add_argument("--out", default="benchmarks/results/bf16_agreement.json")
  args = p.parse_args(argv)

  import jax
  from flax import nnx
  from facetrack_jax import evaluate, input_pipeline, sharding
  from facetrack_jax import tokenizer as tokenizer_lib
  t0 = time.perf_counter()
  config = run_config(p, args)
  mesh = sharding.mesh_from_config(config.mesh)
  tok = tokenizer_lib.from_config(config.data)
  src = input_pipeline.open_source(config.data, args.split)
  sources = evaluate.sources_by_id(src)
  captions, metrics, argmax, logits_ref, tf_acc = {}, {}, {}, {}, {}
  max_delta = 0.0
  logits_fn = nnx.jit(_logits)
  for dtype in DTYPES:
    cfg = evaluate.with_weights_dtype(config, dtype)
    model, step = evaluate.load_model(cfg, args.workdir, mesh)
    rows = evaluate.caption_split(model, cfg, tok, mesh, args.split, source=src, progress=False)
    captions[dtype] = [tok.encode(r["caption"]) for r in rows]
    scored = evaluate.score(rows, sources)      # AutoDQ and TEM: their F1
    metrics[dtype] = {k: scored[k]["f1"] if isinstance(scored[k], dict) else scored[k]
                      for k in ("cider", "rouge_l", "autodq", "tem")}
    picks, hits, n = [], 0, 0
    with sharding.use_mesh(mesh):
      for i, batch_np in enumerate(input_pipeline.make_eval_batches(cfg, tok, args.split,
                                                                     source=src)):
        batch = input_pipeline.to_global(
            {k: batch_np[k] for k in ("frames", "faces", "face_mask", "tokens")}, mesh)
        z_blv = np.asarray(jax.device_get(logits_fn(model, batch["frames"], batch["faces"],
                                                    batch["face_mask"], batch["tokens"])),
                           np.float32)
        m_bl = np.asarray(batch_np["loss_mask"]) > 0
        pick = z_blv.argmax(-1)[m_bl]
        picks.append(pick)
        hits += int((pick == np.asarray(batch_np["targets"])[m_bl]).sum())
        n += int(m_bl.sum())
        if dtype == "float32":
          logits_ref[i] = z_blv[m_bl]
        else:
          max_delta = max(max_delta, float(np.abs(z_blv[m_bl] - logits_ref[i]).max()))
    argmax[dtype] = np.concatenate(picks)
    tf_acc[dtype] = hits / n
  spread = float(max(np.ptp(z) for z in logits_ref.values()))
  same, total = token_agreement(captions["float32"], captions["bfloat16"])
  lcs_same, _ = lcs_agreement(captions["float32"], captions["bfloat16"])
  identical = sum(a == b for a, b in zip(captions["float32"], captions["bfloat16"]))
  tf_same = int((argmax["float32"] == argmax["bfloat16"]).sum())
  result = dict(
      run=args.run, sweep=args.sweep, workdir=str(args.workdir), step=step, split=args.split,
      clips=len(captions["float32"]),
      free_running=dict(same=same, total=total, agreement=same / total,
                        lcs_same=lcs_same, lcs_agreement=lcs_same / total,
                        identical_captions=identical),
      teacher_forced=dict(same=tf_same, total=int(argmax["float32"].size),
                          agreement=tf_same / argmax["float32"].size,
                          next_token_accuracy=tf_acc),
      logits=dict(max_abs_delta=max_delta, fp32_range=spread),
      metrics=metrics, seconds=time.perf_counter() - t0)
  fr, tf = result["free_running"], result["teacher_forced"]
  lines = [f"# bf16 weights against fp32: {args.run} (step {step}, {args.split} split, "
           f"{result['clips']} clips)", "",
           "| measure | value |", "|---|---|",
           f"| greedy captions, token agreement by position | {fr['agreement']:.3f} "
           f"({same}/{total}) |",
           f"| greedy captions, tokens in order (LCS) | {fr['lcs_agreement']:.3f} "
           f"({lcs_same}/{total}) |",
           f"| identical captions | {identical}/{result['clips']} |",
           f"| teacher-forced argmax agreement (references) | {tf['agreement']:.4f} "
           f"({tf_same}/{tf['total']}) |",
           f"| next-token accuracy fp32 / bf16 | {tf_acc['float32']:.4f} / "
           f"{tf_acc['bfloat16']:.4f} |",
           f"| logits max abs Δ / fp32 range | {max_delta:.3f} / {spread:.2f} |"]
  lines += [f"| {d}: CIDEr, ROUGE-L, AutoDQ, TEM | "
            + ", ".join(f"{metrics[d][k]:.3f}" for k in ("cider", "rouge_l", "autodq", "tem"))
            + " |" for d in DTYPES]
  return write_result(args.out, result, lines)


if __name__ == "__main__":
  sys.exit(main())
