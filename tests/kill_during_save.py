"""``python tests/kill_during_save.py STEP <train CLI flags>``: the real training
CLI, killed with SIGKILL as soon as the async checkpoint save of STEP has
started (orbax is still writing it in the background): a pod preempted mid-save."""
import os
import signal
import sys

from absl import app, flags

from facetrack_jax import checkpoint, train

KILL_AT = int(sys.argv.pop(1))
_save = checkpoint.Checkpointer.save


def save(self, step, state, data_iter=None):
  _save(self, step, state, data_iter)
  if step == KILL_AT:
    os.kill(os.getpid(), signal.SIGKILL)


checkpoint.Checkpointer.save = save

if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(train.main)
