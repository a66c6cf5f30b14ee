"""Pods are preempted mid-save: a kill -9 while an async save is being written
leaves the previous checkpoint restorable and the run resumes from it bit for
bit; a damaged newest checkpoint is named with its cause, set aside (not
deleted), and the run falls back to the newest good one."""
import signal
import subprocess

from facetrack_jax import checkpoint
from tests import train_helpers as th
from tests.conftest import ROOT


def test_kill9_during_async_save_resumes_from_the_previous_checkpoint(tmp_path_factory,
                                                                      tmp_path):
  _, ref = th.reference_run(tmp_path_factory)
  data = th.tiny_data(tmp_path_factory)
  w, o = tmp_path / "w", th.overrides(data)
  cmd = [th.command(w, o)[0], str(ROOT / "tests" / "kill_during_save.py"), "9"] + \
      th.command(w, o)[3:]                  # the CLI's flags, after "-m facetrack_jax.train"
  p = subprocess.run(cmd, env=th.env(data), cwd=ROOT, capture_output=True, text=True,
                     timeout=600)
  assert p.returncode == -signal.SIGKILL, p.stderr[-3000:]
  # Killed while step 9 was being written: it never committed; step 6 is the newest.
  assert th.committed_steps(w)[-1] == 6, th.committed_steps(w)
  left = [n for n in (w / "checkpoints").iterdir() if checkpoint.TMP_MARKER in n.name]
  assert left, "the kill landed after the save committed: the test saw no interrupted save"

  p = th.run(w, data, o)
  assert p.returncode == 0, p.stderr[-3000:]
  assert "resuming from step 6" in p.stderr
  assert "never committed" in p.stderr and left[0].name in p.stderr   # named at start-up
  assert 9 in th.committed_steps(w) and not left[0].exists()   # step 9 written again over it
  th.assert_losses_equal(w, ref)


def test_damaged_latest_checkpoint_is_named_set_aside_and_skipped(tmp_path_factory, tmp_path):
  _, ref = th.reference_run(tmp_path_factory)
  data = th.tiny_data(tmp_path_factory)
  w = th.reference_copy(tmp_path_factory, tmp_path / "w", 12)
  # Step 12 truncated on disk: its biggest array file loses its second half.
  files = [f for f in (w / "checkpoints" / "12").rglob("*") if f.is_file()]
  big = max(files, key=lambda f: f.stat().st_size)
  big.write_bytes(big.read_bytes()[: big.stat().st_size // 2])

  p = th.run(w, data, th.overrides(data))
  assert p.returncode == 0, p.stderr[-3000:]
  assert "checkpoint step 12" in p.stderr and "damaged" in p.stderr, p.stderr[-3000:]
  assert "resuming from step 9" in p.stderr
  aside = list((w / "checkpoints.damaged").iterdir())
  assert len(aside) == 1 and aside[0].name.startswith("12-")          # kept, not deleted
  assert (aside[0] / big.relative_to(w / "checkpoints" / "12")).exists()
  th.assert_losses_equal(w, ref)
