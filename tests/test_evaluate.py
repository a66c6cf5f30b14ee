"""evaluate: restore a checkpoint -> sharded greedy captions -> scores -> files.

Runs on the session's tiny trained run (``tests/train_helpers.reference_run``:
``STEPS`` steps on mesh (8, 1, 1), checkpoints every 3 steps), through the real CLI
and in process on another mesh.
"""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests import train_helpers as th
from tests.conftest import ROOT

MISSING_ID = "syn_skipped_by_build"


class Subset:
  """The first ``n`` records of a source (a split whose last batch is partial)."""

  def __init__(self, src, n):
    self.src, self.n = src, n

  def __len__(self):
    return self.n

  def __getitem__(self, i):
    if not 0 <= i < self.n:
      raise IndexError(i)
    return self.src[i]

  def __repr__(self):
    return f"Subset({self.src!r}, {self.n})"


def _source(data, split):
  import tensorflow_datasets as tfds
  return tfds.data_source(data["name"], split=split, data_dir=data["data_dir"], download=False)


def _text(x):
  return x.decode() if isinstance(x, bytes) else str(x)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """(data with a copy of the TFDS set whose build recorded a skipped test
  clip, trained workdir)."""
  data = th.tiny_data(tmp_path_factory)
  workdir, _ = th.reference_run(tmp_path_factory)
  copy = tmp_path_factory.mktemp("eval_tfds")
  shutil.copytree(data["data_dir"], copy, dirs_exist_ok=True,
                  ignore=shutil.ignore_patterns("downloads"))
  version_dir = next(copy.glob("facetrack/*/1.0.0"))
  with open(version_dir / "errors.jsonl", "a") as f:
    f.write(json.dumps({"split": "test", "id": MISSING_ID, "path": "x.mp4",
                        "stage": "detect", "reason": "no face found"}) + "\n")
  return dict(data, data_dir=str(copy)), workdir


def test_cli_writes_predictions_metrics_report_and_drops_padding(run, tmp_path):
  data, ref_dir = run
  workdir = tmp_path / "w"
  shutil.copytree(ref_dir / "checkpoints", workdir / "checkpoints")
  o = th.overrides(data)          # batch 8 on mesh (8, 1, 1): 1 test clip + 7 padding rows
  cmd = ([sys.executable, "-m", "facetrack_jax.evaluate",
          "--config", str(ROOT / "configs" / "tiny_synthetic.py"), "--workdir", str(workdir)]
         + [f"--config.{k}={th._flag(v)}" for k, v in o.items()])
  p = subprocess.run(cmd, env=th.env(data), cwd=ROOT, capture_output=True, text=True,
                     timeout=600)
  assert p.returncode == 0, p.stderr[-4000:]
  assert MISSING_ID in p.stderr            # the skipped clip is reported
  out = workdir / "eval" / str(th.STEPS)   # the latest checkpoint
  preds = json.loads((out / "predictions.json").read_text())
  refs = json.loads((out / "references.json").read_text())
  src = _source(data, "test")
  ids = sorted(_text(src[i]["id"]) for i in range(len(src)))
  assert [x["id"] for x in preds] == ids == [x["id"] for x in refs]   # padding dropped
  assert all(set(x) == {"id", "caption"} and isinstance(x["caption"], str) for x in preds)
  assert {r["id"]: r["caption"] for r in refs} == {
      _text(src[i]["id"]): _text(src[i]["caption"]) for i in range(len(src))}

  m = json.loads((out / "metrics.json").read_text())
  assert (m["step"], m["split"], m["n"], m["num_predictions"]) == (
      th.STEPS, "test", len(ids), len(ids))
  assert m["missing_ids"] == [MISSING_ID]
  for key in ("autodq", "tem"):
    assert set(m[key]) >= {"precision", "recall", "f1"}
    assert all(0.0 <= m[key][k] <= 1.0 for k in ("precision", "recall", "f1"))
  assert m["cider"] >= 0.0 and 0.0 <= m["rouge_l"] <= 1.0
  assert set(m["per_source"]) == {"synthetic"} and m["per_source"]["synthetic"]["n"] == len(ids)
  per_clip = [json.loads(line) for line in (out / "per_clip.jsonl").read_text().splitlines()]
  assert [r["id"] for r in per_clip] == ids and per_clip[0]["source"] == "synthetic"

  per_event = json.loads((out / "per_event.json").read_text())
  assert per_event and all(0.0 <= r["recall"] <= 1.0 for r in per_event.values())
  per_attribute = json.loads((out / "per_attribute.json").read_text())
  assert per_attribute["gender"]["n_ref"] == len(ids) and 0.0 <= per_attribute["gender"]["accuracy"] <= 1.0

  report = (out / "report.md").read_text()
  assert "| CIDEr | ROUGE-L | AutoDQ | TEM |" in report
  assert "## Per event" in report and "| event |" in report
  assert "## Per attribute" in report and "| gender |" in report
  assert ids[0] in report and MISSING_ID in report and preds[0]["caption"][:20] in report


def test_restores_onto_another_mesh_partial_last_batch(run):
  """In process, mesh (4, 2, 1): an earlier step's trained params come back
  (lower loss than a fresh init); 11 clips in batches of 8 give exactly the
  11 predictions of those clips."""
  import jax
  from facetrack_jax import evaluate, input_pipeline, sharding, train_step
  from facetrack_jax.tokenizer import Tokenizer

  data, ref_dir = run
  config = th.make_config(th.overrides(data, mesh__shape=(4, 2, 1)))
  mesh = sharding.make_mesh((4, 2, 1))
  src = Subset(_source(data, "train"), 11)

  model, step = evaluate.load_model(config, ref_dir, mesh, step=6)
  assert step == 6
  leaf = jax.tree.leaves(nnx_params(model))[0]
  assert leaf.sharding.mesh.shape == mesh.shape
  tok = Tokenizer(data["tokenizer"])
  batch_np = next(iter(input_pipeline.make_eval_batches(config, tok, "train", source=src)))
  batch = input_pipeline.to_global({k: batch_np[k] for k in (
      "frames", "faces", "face_mask", "tokens", "targets", "loss_mask")}, mesh)
  setup = train_step.make_setup(config, mesh)
  fresh = train_step.init_state(config, setup)["params"]
  from flax import nnx
  with sharding.use_mesh(mesh):
    mean_ce = lambda sums: float(sums["ce"] / sums["tokens"])
    trained_loss = mean_ce(train_step.loss_sums(model, batch))
    fresh_model = nnx.merge(setup.graphdef, fresh, setup.rest)
    fresh_loss = mean_ce(train_step.loss_sums(fresh_model, batch))
  assert trained_loss < fresh_loss - 0.5, (trained_loss, fresh_loss)

  rows = evaluate.caption_split(model, config, tok, mesh, "train", source=src, progress=False)
  assert [r["id"] for r in rows] == [_text(src[i]["id"]) for i in range(11)]
  assert [r["reference"] for r in rows] == [_text(src[i]["caption"]) for i in range(11)]
  assert all(isinstance(r["caption"], str) for r in rows)


def nnx_params(model):
  from flax import nnx
  return nnx.state(model, nnx.Param)


def test_no_checkpoint_is_a_clear_error(run, tmp_path):
  from facetrack_jax import evaluate
  data, _ = run
  config = th.make_config(th.overrides(data))
  with pytest.raises(FileNotFoundError, match="no checkpoint"):
    evaluate.evaluate(config, tmp_path / "empty")


def test_bf16_weights_generate_what_fp32_weights_do(run):
  """evaluate.load_model(..., weights_dtype="bfloat16") restores the fp32
  checkpoint cast to bf16 (bf16 compute, bf16 KV cache). Per decision, on
  the references (the same prefix for both), the two models' next-token
  argmax agree at >= 95 % of caption positions (issue 19), and the logits are
  within a bf16 tolerance of fp32's (max |Δ| <= 5 % of the fp32 logits'
  range). Free-running greedy captions of 16 clips share >= 80 % of their
  tokens in order (measured 445/480 = 93 %, 2026-12-07). By position the
  figure moves with the data (86 % on the clips of 2026-12-06, 68 % on
  today's): this 20-step model's choices are often near ties and one flip
  shifts the rest of a caption. Measured 98.3 % per decision here; on a
  trained demo run 99.7 % per decision, 94 % in order
  (``benchmarks/bf16_agreement.py``)."""
  import jax
  import jax.numpy as jnp
  from benchmarks.bf16_agreement import lcs_agreement, token_agreement
  from facetrack_jax import evaluate, input_pipeline, sharding
  from facetrack_jax.tokenizer import Tokenizer

  data, ref_dir = run
  config = th.make_config(th.overrides(data))
  mesh = sharding.make_mesh((8, 1, 1))
  tok = Tokenizer(data["tokenizer"])
  src = Subset(_source(data, "train"), 16)
  batch_np = next(iter(input_pipeline.make_eval_batches(config, tok, "train", source=src)))
  batch = input_pipeline.to_global({k: batch_np[k] for k in (
      "frames", "faces", "face_mask", "tokens")}, mesh)
  text_bl = np.asarray(batch_np["loss_mask"]) > 0
  captions, logits = {}, {}
  for dtype in ("float32", "bfloat16"):
    model, _ = evaluate.load_model(config, ref_dir, mesh, weights_dtype=dtype)
    assert {x.dtype for x in jax.tree.leaves(nnx_params(model))} == {jnp.dtype(dtype)}
    with sharding.use_mesh(mesh):
      logits[dtype] = np.asarray(jax.device_get(model(
          batch["frames"], batch["faces"], batch["face_mask"], batch["tokens"])),
          np.float32)[text_bl]
    rows = evaluate.caption_split(model, config, tok, mesh, "train", source=src,
                                  progress=False)
    captions[dtype] = [tok.encode(r["caption"]) for r in rows]
  decided = float(np.mean(logits["float32"].argmax(-1) == logits["bfloat16"].argmax(-1)))
  same, total = token_agreement(captions["float32"], captions["bfloat16"])
  in_order, _ = lcs_agreement(captions["float32"], captions["bfloat16"])
  diff = np.abs(logits["float32"] - logits["bfloat16"]).max()
  spread = np.ptp(logits["float32"])
  print(f"bf16 vs fp32: next-token argmax agree at {decided:.4f} of {text_bl.sum()} caption "
        f"positions; greedy captions {same}/{total} tokens by position, {in_order}/{total} in "
        f"order; logits max |Δ| {diff:.3f} of range {spread:.2f}")
  assert text_bl.sum() > 100 and decided >= 0.95
  assert total > 16 and in_order >= 0.8 * total
  assert diff <= 0.05 * spread


def test_caption_agreement_by_position_and_in_order():
  """benchmarks/bf16_agreement: a token inserted early costs every later
  position by position, one token in order (LCS); a missing tail disagrees."""
  from benchmarks.bf16_agreement import lcs_agreement, token_agreement
  a, b = [[1, 2, 3, 4, 5]], [[1, 9, 2, 3, 4, 5]]
  assert token_agreement(a, b) == (1, 6) and lcs_agreement(a, b) == (5, 6)
  assert token_agreement([[1, 2]], [[1, 2, 3]]) == lcs_agreement([[1, 2]], [[1, 2, 3]]) == (2, 3)
  assert lcs_agreement([[1, 2], [3]], [[2, 1], [3]]) == (2, 3)
