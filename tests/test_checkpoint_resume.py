"""Checkpoints (issue 4 §4): kill -9 at a random step and SIGTERM, then the
same command again — the per-step losses equal an uninterrupted run's bit for
bit; a checkpoint written on mesh (8,1,1) restores onto (2,2,2) with the new
mesh's shardings and training continues.

Every run is the real CLI in a subprocess; the uninterrupted reference run
(tests/train_helpers.py) is shared with test_train.py.
"""

import random
import signal

import jax
import numpy as np

from facetrack_jax import checkpoint, sharding, train_step
from tests import train_helpers as th


def _logged(w, step):
  return lambda: step in th.losses(w)


def test_kill9_then_sigterm_resume_bit_identical(tmp_path_factory, tmp_path):
  ref_dir, ref = th.reference_run(tmp_path_factory)
  data = th.tiny_data(tmp_path_factory)
  w, log = tmp_path / "w", tmp_path / "runs.log"
  o = th.overrides(data)

  # 1. kill -9 at a random step k after the first checkpoint has been committed.
  k = random.randint(4, 8)
  print(f"kill -9 after step {k}")
  p = th.start(w, data, o, log)
  th.wait_for(lambda: _logged(w, k)() and th.committed_steps(w), p, f"step {k}")
  p.send_signal(signal.SIGKILL)
  assert p.wait(timeout=60) == -signal.SIGKILL
  resumed_from = th.committed_steps(w)[-1]
  assert resumed_from < k + 1

  # 2. the same command resumes; SIGTERM once it has logged step k2.
  k2 = random.randint(k + 3, th.STEPS - 3)
  p = th.start(w, data, o, log)
  th.wait_for(_logged(w, k2), p, f"step {k2}")
  p.send_signal(signal.SIGTERM)
  assert p.wait(timeout=300) == 0, log.read_text()[-3000:]
  stopped = max(th.losses(w))
  assert stopped >= k2 and th.committed_steps(w)[-1] == stopped  # saved where it stopped
  print(f"SIGTERM after step {k2}: stopped and saved at step {stopped}")

  # 3. the same command finishes the run.
  p = th.start(w, data, o, log)
  assert p.wait(timeout=600) == 0, log.read_text()[-3000:]
  text = log.read_text()
  assert f"resuming from step {resumed_from}" in text
  assert f"resuming from step {stopped}" in text
  th.assert_losses_equal(w, ref)


def _params_abstract(mesh_shape, data):
  config = th.make_config(th.overrides(data, mesh__shape=mesh_shape))
  mesh = sharding.make_mesh(mesh_shape)
  return config, mesh, train_step.make_setup(config, mesh)


def test_restore_onto_another_mesh_and_continue(tmp_path_factory, tmp_path):
  _, ref = th.reference_run(tmp_path_factory)
  data = th.tiny_data(tmp_path_factory)
  w = th.reference_copy(tmp_path_factory, tmp_path / "w", 6)

  # Restore step 6 (written on (8,1,1)) onto (2,2,2): every leaf carries the
  # new mesh's sharding and the values equal the saved ones.
  _, old_mesh, old_setup = _params_abstract((8, 1, 1), data)
  _, new_mesh, new_setup = _params_abstract((2, 2, 2), data)
  ckpt = checkpoint.Checkpointer(w / "checkpoints")
  old = ckpt.restore(6, old_setup.abstract_state)
  new = ckpt.restore(6, new_setup.abstract_state)
  ckpt.close()
  sharded_over_new = 0
  for (path, a), b, want in zip(jax.tree_util.tree_flatten_with_path(new)[0],
                                jax.tree.leaves(old), jax.tree.leaves(new_setup.abstract_state)):
    assert a.sharding == want.sharding, jax.tree_util.keystr(path)
    assert dict(a.sharding.mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 2}
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    sharded_over_new += any(ax in ("fsdp", "tensor") for ax in jax.tree.leaves(
        tuple(a.sharding.spec)))
  assert sharded_over_new > 10  # fsdp / tensor sharded params, not all replicated

  # Continue training on (2,2,2) with the CLI: losses continue the (8,1,1) run.
  p = th.run(w, data, th.overrides(data, mesh__shape=(2, 2, 2)))
  assert p.returncode == 0, p.stderr[-3000:]
  got = th.losses(w)
  assert sorted(got) == list(range(1, th.STEPS + 1))
  rel = max(abs(got[s] - ref[s]) / ref[s] for s in range(7, th.STEPS + 1))
  print(f"(2,2,2) continuation vs (8,1,1) run, steps 7-{th.STEPS}: max rel. loss diff {rel:.1e}")
  assert rel < 1e-4
