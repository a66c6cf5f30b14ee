"""configs/paper.py and configs/paper_tiny.py: the paper's recipe.

* the CLI on paper.py passes config validation on CPU and stops, before any
  allocation, naming the missing ``init.*`` weights;
* the stages set the trainable groups (stage 2 from stage 1's checkpoint);
* paper_tiny imports random tiny HF SigLIP (with MAP head) + Qwen2 (untied)
  safetensors into its towers, and stage 1 moves only the projectors.
"""

import importlib.util
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from facetrack_jax import optim, sharding, train, train_step
from facetrack_jax.models.facetrack import num_visual_tokens
from tests import train_helpers as th
from tests.conftest import ROOT


def _config(name, stage=None):
  spec = importlib.util.spec_from_file_location(f"cfg_{name}", ROOT / "configs" / f"{name}.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.get_config() if stage is None else mod.get_config(stage)


def test_paper_cli_stops_at_validation_naming_missing_init_files(tmp_path):
  t0 = time.time()
  p = subprocess.run([sys.executable, "-m", "facetrack_jax.train", "--config",
                      str(ROOT / "configs" / "paper.py"), "--workdir", str(tmp_path / "w")],
                     cwd=tmp_path, capture_output=True, text=True, timeout=300,
                     env={**__import__("os").environ, "PYTHONPATH": str(ROOT),
                          "JAX_PLATFORMS": "cpu"})
  seconds = time.time() - t0
  assert p.returncode == 2, p.stderr[-3000:]
  assert "config.init.vit=weights/siglip-so400m-patch14-384: no such file" in p.stderr
  assert "config.init.lm=weights/Qwen2-7B: no such file" in p.stderr
  assert "Traceback" not in p.stderr
  assert not (tmp_path / "w").exists()  # stopped before writing anything
  print(f"paper.py stopped after {seconds:.1f} s")


def test_paper_stages():
  s1, s2 = _config("paper", "stage1"), _config("paper", "stage2")
  assert s1.train.trainable == ("global_stream", "face_stream", "time_embedding")
  assert s2.train.trainable == s1.train.trainable + ("lm",)
  assert s2.init.checkpoint and not (s2.init.vit or s2.init.lm)
  assert s1.data.chat_template == "qwen2" and s1.model.visual_token_id == 151656
  with pytest.raises(ValueError, match="unknown stage 'stage3'"):
    _config("paper", "stage3")
  s2.init.vit = "x"
  with pytest.raises(train.ConfigError, match="leave config.init.vit / face_vit / lm empty"):
    train.check_init_files(s2)


def _batch(config, mesh, b=8, seed=0):
  """A random batch shaped as the pipeline's (the visual placeholders first)."""
  rng = np.random.default_rng(seed)
  m, L = config.model, config.data.max_len
  n_vis = num_visual_tokens(m)
  tokens = rng.integers(10, 900, (b, L)).astype(np.int32)
  tokens[:, :n_vis] = m.visual_token_id
  targets = np.roll(tokens, -1, 1)
  mask = np.zeros((b, L), np.float32)
  mask[:, n_vis:n_vis + 40] = 1
  batch = dict(frames=rng.integers(0, 256, (b, m.num_frames, m.frame_size, m.frame_size, 3),
                                   dtype=np.uint8),
               faces=rng.integers(0, 256, (b, m.num_frames, m.face_size, m.face_size, 3),
                                  dtype=np.uint8),
               face_mask=np.ones((b, m.num_frames), bool), tokens=tokens, targets=targets,
               loss_mask=mask)
  from facetrack_jax import input_pipeline
  return input_pipeline.to_global(batch, mesh)


def test_paper_tiny_imports_hf_towers_and_stage1_trains_only_projectors(tmp_path):
  config = _config("paper_tiny", "stage1")
  th.tiny_hf_weights(config, tmp_path)
  train.check_init_files(config)
  mesh = sharding.make_mesh((2, 2, 2))
  setup = train_step.make_setup(config, mesh)
  state = train_step.init_state(config, setup,
                                params_override=train.imported_params(config, mesh))
  from facetrack_jax.convert.safetensors_io import read_safetensors
  np.testing.assert_array_equal(np.asarray(state["params"]["lm"]["embedding"]),
                                read_safetensors(tmp_path / "lm")["model.embed_tokens.weight"])
  before = jax.device_get(state["params"])
  batch = _batch(config, mesh)
  losses = []
  with sharding.use_mesh(mesh):
    fn = train_step.jit_train_step(setup, {k: v.ndim for k, v in batch.items()})
    for _ in range(3):
      state, m = fn(state, setup.rest, batch)
      losses.append(float(m["loss"]))
  assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses
  after = jax.device_get(state["params"])
  flat = lambda t: {optim.path_str(p): v for p, v in jax.tree_util.tree_flatten_with_path(t)[0]}
  labels, before, after = flat(setup.labels), flat(before), flat(after)
  frozen = [k for k, l in labels.items() if l == optim.FROZEN]
  assert {k.split(".")[0] for k in frozen} == {"vit", "lm"}  # shared towers: no face_vit
  for k in frozen:
    assert before[k].tobytes() == after[k].tobytes(), f"frozen param {k} changed"
  trained = [k for k, l in labels.items() if l == optim.TRAINABLE]
  assert sum(not np.array_equal(before[k], after[k]) for k in trained) >= len(trained) // 2
  print(f"paper_tiny stage 1 losses {losses}")
