"""Issue 22's done-when: the paper recipe as a pod team runs it, in small.

``configs/paper_tiny.py`` (stage 1) fine-tuned from imported random tiny HF
SigLIP + Qwen2 safetensors and a locally made Qwen2-style tokenizer.json, on
the synthetic set, as 2 processes × 4 CPU devices (jax.distributed on
127.0.0.1), with the weights, tokenizer, TFDS data and workdir all on
``gs://`` (a local GCS emulator, tests/gcs_emulator.py):

* the loss falls;
* a run killed with SIGKILL (both processes) after a checkpoint and resumed
  logs, for the steps it computes again, losses bit-identical to those it
  logged before the kill (its uninterrupted part);
* evaluation on the held-out split scores every clip;
* checkpoints (orbax/tensorstore, the iterator state per data shard),
  metrics.jsonl, TensorBoard and the evaluation report all land in the
  bucket, and no local ``gs:`` directory appears.
"""

import json
import signal
import time

from etils import epath

from facetrack_jax import hf_tokenizer, paths
from tests import gcs_emulator
from tests import train_helpers as th

STEPS, CKPT = 8, 3
KILL_AT = CKPT + 2   # the kill comes at or after this step's loss: 2 steps recomputed


def _captions(data) -> list[str]:
  import pathlib
  ann = next((pathlib.Path(data["data_dir"]) / "downloads").glob("*/annotations.json"))
  return [a["caption"] for a in json.loads(ann.read_text())]


def _committed(workdir, step: int) -> bool:
  # orbax on an object store marks a finished save with commit_success.txt.
  return (epath.Path(workdir) / "checkpoints" / str(step) / "commit_success.txt").exists()


def test_paper_tiny_two_hosts_on_gcs_finetunes_resumes_and_evaluates(tmp_path_factory,
                                                                      tmp_path):
  t0 = time.time()
  data = th.tiny_data(tmp_path_factory)
  import importlib.util
  spec = importlib.util.spec_from_file_location(
      "cfg_paper_tiny", th.ROOT / "configs" / "paper_tiny.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  cfg = mod.get_config("stage1")
  th.tiny_hf_weights(cfg, tmp_path / "hf")
  tok = hf_tokenizer.train_byte_level_bpe(_captions(data), 1000, tmp_path / "tok" / "tokenizer.json")

  with gcs_emulator.emulator(tmp_path / "emulator.log") as (url, env):
    b = f"gs://{gcs_emulator.BUCKET}"
    gcs_emulator.upload_tree(data["data_dir"], f"{b}/data/tfds")
    gcs_emulator.upload_tree(tmp_path / "tok", f"{b}/qwen2_tok")
    gcs_emulator.upload_tree(tmp_path / "hf", f"{b}/weights")
    o = {"data.name": data["name"], "data.data_dir": f"{b}/data/tfds",
         "data.tokenizer": f"{b}/qwen2_tok", "init.vit": f"{b}/weights/vit",
         "init.lm": f"{b}/weights/lm", "model.visual_token_id": tok.visual_id,
         "data.max_len": 128, "data.paraphrase_instructions": False,
         "train.num_steps": STEPS, "train.checkpoint_every": CKPT,
         "train.remote_log_every_s": 0.0,
         "train.learning_rate": 1e-2, "train.warmup_steps": 1, "train.async_checkpointing": False,
         # the last step traced on both hosts, each copying its trace up to gs://
         "train.profile_start_step": STEPS - 1, "train.profile_num_steps": 1,
         "train.profile_all_processes": True,
         # the held-out loss with the split's one clip on host 0 and only padding on host 1
         "train.eval_every": 4}
    run = lambda w, name, extra=(): th.start_processes(
        f"facetrack_jax.{name}", [w, w], data, o,
        [tmp_path / f"{name}_{w.split('/')[-1]}_{i}.log" for i in range(2)], extra,
        config="paper_tiny.py", **env)
    logs = lambda w, name: [tmp_path / f"{name}_{w.split('/')[-1]}_{i}.log" for i in range(2)]
    t1 = time.time()

    # Run A: killed (SIGKILL, both processes) once checkpoint CKPT is committed
    # and the loss of step KILL_AT is logged (metrics.jsonl rewritten every
    # step: remote_log_every_s=0); its log up to KILL_AT is the uninterrupted
    # reference for the steps that run B (resumed from CKPT) computes again.
    w = f"{b}/runs/w"
    procs = run(w, "train")
    th.wait_for(lambda: _committed(w, CKPT) and KILL_AT in th.losses(w), procs[0],
                f"checkpoint {CKPT} and step {KILL_AT}", timeout=400)
    for p in procs:
      p.send_signal(signal.SIGKILL)
    for p in procs:
      p.wait(30)
    before = th.losses(w)
    assert not _committed(w, 2 * CKPT), "killed too late: nothing to recompute"
    t2 = time.time()
    codes, texts = th.wait_all(run(w, "train"), logs(w, "train"))
    assert codes == [0, 0], "\n\n".join(t[-3000:] for t in texts)
    assert f"resuming from step {CKPT}" in texts[0], texts[0][-3000:]
    after = th.losses(w)
    assert sorted(after) == list(range(1, STEPS + 1))
    overlap = [s for s in before if s > CKPT]
    assert overlap and all(after[s] == before[s] for s in before), (before, after)
    assert after[STEPS] < after[1], after   # the loss falls
    wd = epath.Path(w)
    assert {f.name for f in (wd / "checkpoints" / str(STEPS) / "data_iter").iterdir()} >= {
        "shard_0-of-2.json", "shard_1-of-2.json"}
    assert any(f.name.startswith("events.out.tfevents") for f in (wd / "tb").iterdir())
    evals = {r["step"]: r["eval_loss"] for r in th.records(w) if "eval_loss" in r}
    assert sorted(evals) == [4, STEPS] and all(0 < v < 20 for v in evals.values()), evals
    traces = [f for f in paths.files_under(wd / "tb" / "plugins" / "profile")
              if f.name.endswith(".xplane.pb")]
    assert traces and all(b"jit_step" in f.read_bytes() for f in traces), traces
    t3 = time.time()

    # Evaluation of the held-out split: every clip scored.
    codes, texts = th.wait_all(run(w, "evaluate", ["--split", "test"]), logs(w, "evaluate"))
    assert codes == [0, 0], "\n\n".join(t[-3000:] for t in texts)
    out = epath.Path(w) / "eval" / str(STEPS)
    metrics = json.loads((out / "metrics.json").read_text())
    import tensorflow_datasets as tfds
    n_test = len(tfds.data_source(data["name"], split="test", data_dir=data["data_dir"],
                                  download=False))
    assert metrics["num_predictions"] == metrics["n"] == n_test >= 1
    assert not metrics["missing_ids"]
    assert metrics["workdir"] == w
    for name in ("predictions.json", "per_clip.jsonl", "per_event.json", "report.md"):
      assert (out / name).is_file(), name
  assert not (th.ROOT / "gs:").exists() and not (tmp_path / "gs:").exists()
  t4 = time.time()
  print(f"paper_tiny 2x4 on gs://: setup {t1 - t0:.1f} s, run to the kill {t2 - t1:.1f} s, "
        f"resume {t3 - t2:.1f} s, evaluate {t4 - t3:.1f} s; losses {after}, "
        f"before the kill {before}")
