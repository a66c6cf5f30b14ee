"""Sweeps (facetrack_jax.sweep): the grid helpers and run names, the face-token
sweep file, and a tiny sweep at CI size (2 points × 20 steps, and a run that
fails) through the real CLIs — a printed command runs as is in a shell, a
sweep killed mid-run and started again ends with the results of the run left
alone, a failing run is recorded while the others finish, and TensorBoard's
own event reader reads the HParams summaries."""

import json
import math
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT

from facetrack_jax import sweep, sweep_local  # light: no jax at import


# -- the grid and the names ---------------------------------------------------------------
def test_grid_helpers_build_the_runs_and_names_follow_the_overrides():
  k = sweep.axis("model.compressor.face_tokens", [0, 16])
  grid = sweep.product(k, sweep.seeds(2))
  assert grid == [{"model.compressor.face_tokens": 0, "seed": 0},
                  {"model.compressor.face_tokens": 0, "seed": 1},
                  {"model.compressor.face_tokens": 16, "seed": 0},
                  {"model.compressor.face_tokens": 16, "seed": 1}]
  z = sweep.zipped(sweep.axis("train.learning_rate", [1e-3, 3e-4]),
                   sweep.axis("train.warmup_steps", [10, 20]))
  assert z == [{"train.learning_rate": 1e-3, "train.warmup_steps": 10},
               {"train.learning_rate": 3e-4, "train.warmup_steps": 20}]
  assert sweep.run_names(grid) == ["face_tokens=0,seed=0", "face_tokens=0,seed=1",
                                   "face_tokens=16,seed=0", "face_tokens=16,seed=1"]
  # Two keys ending alike keep their whole path; tuples and floats stay readable.
  names = sweep.run_names([{"model.vit.width": 96, "model.lm.width": 128},
                           {"mesh.shape": (2, -1, 1), "train.learning_rate": 0.001}, {}])
  assert names == ["model.vit.width=96,model.lm.width=128", "shape=2_-1_1,learning_rate=0.001",
                   "base"]
  assert sweep.override_flags({"mesh.shape": (2, -1, 1), "data.name": "a/b"}) == [
      "--config.mesh.shape=(2, -1, 1)", "--config.data.name=a/b"]
  with pytest.raises(ValueError, match="seed"):
    sweep.product(sweep.seeds(2), sweep.seeds(2))
  with pytest.raises(ValueError, match="lengths"):
    sweep.zipped(sweep.seeds(2), sweep.seeds(3))


def test_parallel_runs_get_disjoint_shares_of_the_cores():
  assert sweep_local.core_groups(1, [0, 1]) == [None]            # one run: all cores, no pinning
  assert sweep_local.core_groups(2, [0, 1]) == [[0], [1]]
  groups = sweep_local.core_groups(3, list(range(8)))
  assert sorted(c for g in groups for c in g) == list(range(8))
  assert sorted(len(g) for g in groups) == [2, 3, 3]
  assert sweep_local.core_groups(4, [5, 7]) == [[5], [7], [5], [7]]   # more runs than cores
  with pytest.raises(ValueError, match="parallel"):
    sweep_local.core_groups(0, [0])


@pytest.mark.parametrize("body, message", [
    ("def get_config(size='ci'):\n  return demo.demo_config(size)\n", "get_sweep"),
    ("{cfg}def get_sweep():\n  return [{{'seed': 1}}, [1]]\n", "entry 1 is a list"),
    ("{cfg}def get_sweep():\n  return [{{'seed': [1, 2]}}]\n", "seed=[1, 2]"),
    ("{cfg}def get_sweep():\n  return [{{'seed': 1}}, {{'seed': 1}}]\n", "same run"),
    ("{cfg}def get_sweep():\n  return [{{'model.no_such_field': 1}}]\n",
     "run no_such_field=1: error: bad --config override"),
    ("{cfg}def get_sweep():\n  return [{{'data.name': 'a/b'}}, {{'data.name': 'a b'}}]\n",
     "several runs would be named ['name=a_b']"),
])
def test_bad_sweep_files_are_clear_errors(tmp_path, body, message):
  cfg = "def get_config(size='ci'):\n  return demo.demo_config(size)\n"
  f = tmp_path / "bad.py"
  f.write_text("from facetrack_jax import main as demo\n" + body.format(cfg=cfg))
  with pytest.raises(SystemExit, match=message.replace("[", r"\[").replace("]", r"\]")) as e:
    sweep.plan(f, tmp_path / "w", tmp_path / "d", "ci", [])
  assert str(f) in str(e.value)


# -- the face-token sweep file -----------------------------------------------------------
def test_face_token_sweep_keeps_the_caption_room_and_follows_the_crop(tmp_path):
  from facetrack_jax import main as demo
  from facetrack_jax.models.facetrack import num_visual_tokens
  _, runs = sweep.plan(ROOT / "configs/sweeps/face_tokens.py", tmp_path / "w", tmp_path / "d",
                       "full", [])
  by = {r.name: r.config for r in runs}
  ks = {(c.model.compressor.face_tokens, c.model.face_size) for c in by.values()}
  assert ks == {(0, 32), (1, 32), (4, 32), (16, 32), (4, 48)}
  assert len(runs) == 15 and {c.seed for c in by.values()} == {0, 1, 2}
  demo_cfg = demo.load_config("full", [], tmp_path / "d")
  room = demo_cfg.data.max_len - num_visual_tokens(demo_cfg.model)
  for name, c in by.items():
    assert c.data.max_len - num_visual_tokens(c.model) == room, name   # same caption room
    assert c.model.lm.max_len - c.data.max_len == (demo_cfg.model.lm.max_len
                                                   - demo_cfg.data.max_len), name
    assert c.model.face_vit.image_size == c.model.face_size, name
    assert c.data.shuffle_seed == c.seed, name                   # data order follows the seed
    assert str(c.model.face_size) in c.data.name or c.model.face_size == 32
  assert by["face_tokens=4,face_size=48,seed=0"].data.name != by["face_tokens=4,seed=0"].data.name
  # K = 4, seed 0 on 32-px crops is the demo's own run as it was measured: before the
  # face tower's own heads (pinned off, since K = 0 has no face tower for them) ...
  pinned = demo_cfg.copy_and_resolve_references()
  pinned.model.face_event_head, pinned.model.face_tower_grad = False, 1.0
  pinned.train.face_event_loss_weight = 0.0
  pinned.model.face_attribute_head, pinned.train.face_attribute_loss_weight = False, 0.0
  pinned.model.face_vit.update(width=96, num_heads=3, mlp_dim=192)
  pinned.train.event_loss_weight = 1.0
  assert by["face_tokens=4,seed=0"].to_json() == pinned.to_json()
  # ... the wide tower's token event loss at 3 is the demo today, its face event loss
  # at 3 the demo with the token one at 1 and the face one at 3 ...
  _, runs = sweep.plan(ROOT / "configs/sweeps/event_weight_wide.py", tmp_path / "w",
                       tmp_path / "d", "full", [])
  wide = {r.name: r.config for r in runs}
  assert wide["event_loss_weight=3.0,seed=0"].to_json() == demo_cfg.to_json()
  light = demo_cfg.copy_and_resolve_references()
  light.train.event_loss_weight = 1.0
  face3 = light.copy_and_resolve_references()
  face3.train.face_event_loss_weight = 3.0
  assert wide["face_event_loss_weight=3.0,seed=0"].to_json() == face3.to_json()
  # ... the appearance-weight sweep changes only the demo's appearance weight ...
  _, runs = sweep.plan(ROOT / "configs/sweeps/appearance_weight_wide.py", tmp_path / "w",
                       tmp_path / "d", "full", [])
  heavier = demo_cfg.copy_and_resolve_references()
  heavier.train.face_attribute_loss_weight = 0.1
  assert {r.name: r.config for r in runs}[
      "face_attribute_loss_weight=0.1,seed=0"].to_json() == heavier.to_json()
  # ... the demo-steps sweep changes only the demo's number of steps ...
  _, runs = sweep.plan(ROOT / "configs/sweeps/demo_steps.py", tmp_path / "w", tmp_path / "d",
                       "full", [])
  shorter = demo_cfg.copy_and_resolve_references()
  shorter.train.num_steps = 600
  assert {r.name: r.config for r in runs}["num_steps=600,seed=0"].to_json() == shorter.to_json()
  # ... the face-capacity sweep's point at the demo's weight is that with the token one at 1 ...
  _, runs = sweep.plan(ROOT / "configs/sweeps/face_capacity.py", tmp_path / "w", tmp_path / "d",
                       "full", [])
  now = {r.name: r.config for r in runs}
  assert now["width=192,num_heads=6,mlp_dim=384,face_attribute_loss_weight=0.03,seed=0"
             ].to_json() == light.to_json()
  # ... the face-attribute sweep's point at that weight is that with the narrow face ViT ...
  narrow = light.copy_and_resolve_references()
  narrow.model.face_vit.update(width=96, num_heads=3, mlp_dim=192)
  _, runs = sweep.plan(ROOT / "configs/sweeps/face_attributes.py", tmp_path / "w", tmp_path / "d",
                       "full", [])
  assert {r.name: r.config for r in runs}[
      "face_attribute_head=True,face_attribute_loss_weight=0.03,seed=0"].to_json() == narrow.to_json()
  # ... and the face-event sweep's point at its face_tower_grad is that without the head.
  _, runs = sweep.plan(ROOT / "configs/sweeps/face_events.py", tmp_path / "w", tmp_path / "d",
                       "full", [])
  before = narrow.copy_and_resolve_references()
  before.model.face_attribute_head, before.train.face_attribute_loss_weight = False, 0.0
  assert {r.name: r.config for r in runs}[
      "face_event_head=True,face_event_loss_weight=1.0,face_tower_grad=0.1,seed=0"
  ].to_json() == before.to_json()
  # A --config override reaches the followers too.
  _, runs = sweep.plan(ROOT / "configs/sweeps/face_tokens.py", tmp_path / "w", tmp_path / "d",
                       "full", ["--config.model.num_frames=4"])
  c = next(r.config for r in runs if r.name == "face_tokens=16,seed=0")
  assert c.model.num_frames == 4 and c.data.max_len - num_visual_tokens(c.model) == room


def test_points_are_mean_and_std_over_seeds():
  from facetrack_jax import sweep_report

  def rec(name, k, seed, x, status="done"):
    r = {"name": name, "overrides": {"k": k, "seed": seed}, "status": status,
         "visual_tokens": 8 * k}
    if status == "done":
      r["metrics"] = {"tem": x, "autodq": x, "cider": x, "rouge_l": x, "loss": 1 + x}
      r["lift"] = {"mouth_smile": x / 10}
    else:
      r["error"] = "ValueError: boom"
    return r
  records = [rec("a", 1, 0, 0.1), rec("b", 1, 1, 0.3), rec("c", 4, 0, 0.5),
             rec("d", 4, 1, None, "failed")]
  points = sweep_report.summarize(records, {"k": [1, 1, 4, 4], "seed": [0, 1, 0, 1]})
  assert [p["label"] for p in points] == ["k=1", "k=4"]
  assert points[0]["tem"] == pytest.approx([0.2, math.sqrt(0.02)])
  assert points[0]["lift"]["mouth_smile"] == pytest.approx([0.02, math.sqrt(0.0002)])
  assert points[1]["tem"] == [0.5, 0.0] and points[1]["done"] == 1 and points[1]["failed"] == 1
  assert points[1]["values"] == {"k": 4}
  text = sweep_report.render(points, records, {"sweep": "s.py"}, "tem")
  assert "| k=1 | 2/2 | 8 | 0.200 ± 0.141 |" in text and "1/2 (1 failed)" in text
  assert "| k=4 | 1/2 (1 failed) | 32 | 0.500 | 0.500 |" in text   # one run: no "± 0.000"
  assert "| d | failed: ValueError: boom |" in text


# -- a tiny sweep through the CLIs ------------------------------------------------------
TINY = """
from facetrack_jax import main as demo
from facetrack_jax import sweep

def get_config(size="ci"):
  return demo.demo_config(size)

def get_sweep():   # two points, and one that fails (batch 8 is not divisible by 3)
  return sweep.axis("data.flip_prob", [0.5, 0.0]) + [{"train.grad_accum": 3}]
"""
GOOD = ["flip_prob=0.5", "flip_prob=0.0"]


def _env(cache):
  return dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(cache),
              JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
              JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
              PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _sweep_argv(file, workdir, data, *extra):
  return [sys.executable, "-m", "facetrack_jax.sweep", "--sweep", str(file), "--workdir",
          str(workdir), "--data-dir", str(data), "--size", "ci",
          "--config.train.num_steps=20", "--config.train.checkpoint_every=5", *extra]


def _latest(ckpt: pathlib.Path) -> int:
  return max((int(p.name) for p in ckpt.iterdir() if p.name.isdigit()), default=0)


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory, ci_demo_dirs):
  root = tmp_path_factory.mktemp("sweep")
  (data, cache), f = ci_demo_dirs, root / "tiny.py"
  env = _env(cache)
  f.write_text(TINY)
  # A: the printed command of the run B will interrupt, run in a shell: the reference.
  p = subprocess.run(_sweep_argv(f, root / "A", data, "--print-commands", "--only", GOOD[1]),
                     env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert p.returncode == 0, p.stderr[-3000:]
  lines = [json.loads(line) for line in p.stdout.splitlines()]
  shell_env = {k: v for k, v in env.items() if k != "PYTHONPATH"}   # the command cds itself
  for line in lines:
    q = subprocess.run(["bash", "-c", line["command"]], env=shell_env, cwd="/",
                       capture_output=True, text=True, timeout=600)
    assert q.returncode == 0, q.stdout[-2000:] + q.stderr[-3000:]
  a = subprocess.run(_sweep_argv(f, root / "A", data, "--report-only"), env=env, cwd=ROOT,
                     capture_output=True, text=True, timeout=300)
  assert a.returncode == 0, a.stdout[-2000:] + a.stderr[-3000:]
  # B: the whole sweep, killed (the sweep and its run, SIGKILL) in the middle of the
  # second run's training, then started again with two runs at a time.
  second = root / "B" / GOOD[1]
  proc = subprocess.Popen(_sweep_argv(f, root / "B", data), env=env, cwd=ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          start_new_session=True)
  deadline = time.time() + 400
  while not (second / "checkpoints" / "5").is_dir():
    assert proc.poll() is None and time.time() < deadline, "the sweep ended before step 5"
    time.sleep(0.005)
  os.killpg(proc.pid, signal.SIGKILL)
  proc.wait()
  while True:            # until every process of the group is gone
    try:
      os.killpg(proc.pid, 0)
      time.sleep(0.05)
    except ProcessLookupError:
      break
  killed_at = _latest(second / "checkpoints")
  assert 5 <= killed_at < 20 and not (second / "eval").exists()
  b = subprocess.run(_sweep_argv(f, root / "B", data, "--parallel", "2"), env=env, cwd=ROOT,
                     capture_output=True, text=True, timeout=600)
  return dict(root=root, lines=lines, b=b, killed_at=killed_at)


def _result(workdir: pathlib.Path, name: str) -> dict:
  run = workdir / name
  return {"losses": [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text()
                                             .splitlines())],
          "predictions": json.loads((run / "eval" / "20" / "predictions.json").read_text()),
          "metrics": json.loads((run / "eval" / "20" / "metrics.json").read_text())}


def test_printed_commands_run_as_is_in_a_shell(tiny_sweep):
  root, lines = tiny_sweep["root"], tiny_sweep["lines"]
  assert [line["name"] for line in lines] == [GOOD[1]]     # --only
  for line in lines:
    assert line["workdir"] == str(root / "A" / line["name"])
    assert (pathlib.Path(line["workdir"]) / "eval" / "20" / "metrics.json").exists()
  # --report-only gathered A without running the rest.
  status = {r["name"]: r["status"] for r in json.loads((root / "A" / "sweep.json").read_text())
            ["runs"]}
  assert status == {GOOD[0]: "pending", GOOD[1]: "done", "grad_accum=3": "pending"}
  assert not (root / "A" / GOOD[0]).exists()


def test_a_killed_sweep_started_again_ends_with_the_same_results(tiny_sweep):
  root, b = tiny_sweep["root"], tiny_sweep["b"]
  assert b.returncode == 1, b.stdout[-3000:] + b.stderr[-3000:]     # 1: a run failed
  assert f"[skip] {GOOD[0]}: finished" in b.stdout                  # not run again
  log = (root / "B" / GOOD[1] / "sweep.log").read_text()
  assert f"resuming from step {tiny_sweep['killed_at']}" in log
  ref, got = _result(root / "A", GOOD[1]), _result(root / "B", GOOD[1])
  assert len(got["losses"]) == 20
  for k in ("losses", "predictions"):
    assert got[k] == ref[k], k                                       # bit for bit
  for k in ("cider", "rouge_l", "autodq", "tem"):
    assert got["metrics"][k] == ref["metrics"][k], k
  assert _result(root / "B", GOOD[0])["losses"] != got["losses"]    # the points differ
  # The table holds what the runs wrote.
  out = json.loads((root / "B" / "sweep.json").read_text())
  tem = {r["name"]: r["metrics"]["tem"] for r in out["runs"] if r["status"] == "done"}
  assert tem == {n: _result(root / "B", n)["metrics"]["tem"]["f1"] for n in GOOD}
  assert tem[GOOD[1]] == ref["metrics"]["tem"]["f1"]


def test_a_failing_run_is_recorded_and_the_others_finish(tiny_sweep):
  root = tiny_sweep["root"]
  out = json.loads((root / "B" / "sweep.json").read_text())
  status = {r["name"]: r["status"] for r in out["runs"]}
  assert status == {"flip_prob=0.5": "done", "flip_prob=0.0": "done", "grad_accum=3": "failed"}
  failed = next(r for r in out["runs"] if r["name"] == "grad_accum=3")
  assert "grad_accum" in failed["error"] and "divisible" in failed["error"]
  md = (root / "B" / "sweep.md").read_text()
  assert "| grad_accum=3 | failed: " in md and "![TEM" in md
  points = {p["label"]: p for p in out["points"]}
  assert points["flip_prob=0.5"]["tem"] == [_result(root / "B", GOOD[0])["metrics"]["tem"]["f1"],
                                            0.0]
  import cv2
  img = cv2.imread(str(root / "B" / "sweep.png"))
  assert img is not None and img.shape[0] > 100 and img.shape[1] > 100


def test_hparams_summaries_read_back_with_tensorboards_event_reader(tiny_sweep):
  from tensorboard.backend.event_processing import event_accumulator
  from tensorboard.plugins.hparams import api_pb2, metadata
  hp = tiny_sweep["root"] / "B" / "hparams"
  out = json.loads((tiny_sweep["root"] / "B" / "sweep.json").read_text())

  def load(path):
    acc = event_accumulator.EventAccumulator(str(path))
    acc.Reload()
    return acc
  exp = metadata.parse_experiment_plugin_data(
      load(hp).PluginTagToContent("hparams")[metadata.EXPERIMENT_TAG])
  infos = {h.name: h for h in exp.hparam_infos}
  assert set(infos) == {"data.flip_prob", "train.grad_accum"}
  assert sorted(v.number_value for v in infos["data.flip_prob"].domain_discrete.values) == [
      0.0, 0.5]
  assert "eval/tem" in {m.name.tag for m in exp.metric_infos}
  for r in out["runs"]:
    acc = load(hp / r["name"])
    content = acc.PluginTagToContent("hparams")
    start = metadata.parse_session_start_info_plugin_data(
        content[metadata.SESSION_START_INFO_TAG])
    assert {k: v.number_value for k, v in start.hparams.items()} == r["values"]
    end = metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG])
    if r["status"] == "done":
      assert end.status == api_pb2.STATUS_SUCCESS
      tem = acc.Scalars("eval/tem")
      assert [(e.step, e.value) for e in tem] == [(20, pytest.approx(r["metrics"]["tem"]))]
    else:
      assert end.status == api_pb2.STATUS_FAILURE and not acc.Tags()["scalars"]


def test_merge_takes_finished_runs_from_an_earlier_sweep_json(tiny_sweep, ci_demo_dirs):
  """--report-only --merge A/sweep.json B/sweep.json on an empty workdir: the
  finished runs of those files stand in for the runs not finished here (the
  first file that has a run wins), each naming its file; the rest stays
  pending, and the table is computed from them."""
  root, (data, cache) = tiny_sweep["root"], ci_demo_dirs
  a, b = root / "A" / "sweep.json", root / "B" / "sweep.json"
  p = subprocess.run(_sweep_argv(root / "tiny.py", root / "C", data, "--report-only",
                                 "--merge", str(a), str(b)),
                     env=_env(cache), cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
  out = json.loads((root / "C" / "sweep.json").read_text())
  runs = {r["name"]: r for r in out["runs"]}
  assert runs[GOOD[1]]["merged_from"] == str(a) and runs[GOOD[0]]["merged_from"] == str(b)
  assert runs["grad_accum=3"]["status"] == "pending"        # failed in B: not merged
  assert runs[GOOD[0]]["metrics"]["tem"] == _result(root / "B", GOOD[0])["metrics"]["tem"]["f1"]
  assert out["settings"]["merged_from"] == {str(a): [GOOD[1]], str(b): [GOOD[0]]}
  assert f"| {GOOD[0]} | done (from {b}) |" in (root / "C" / "sweep.md").read_text()
  bad = root / "not_a_sweep.json"
  bad.write_text("[]")
  q = subprocess.run(_sweep_argv(root / "tiny.py", root / "C", data, "--report-only",
                                 "--merge", str(bad)),
                     env=_env(cache), cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert q.returncode != 0 and "not a sweep.json" in q.stderr
