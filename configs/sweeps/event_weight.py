r"""The event loss at weight 3 instead of the demo's 1 (issue 21), K = 4,
× 3 seeds.

    python -m facetrack_jax.sweep --sweep configs/sweeps/event_weight.py --workdir W

One seed at weight 3 (K = 4, 2026-12-07) read the events better than weight 1
(TEM 0.514 vs 0.426 on that seed) at some cost in CIDEr; this sweep says
whether it holds over seeds (it does: TEM 0.526 ± 0.014; the demo took the
face tower's own event head instead, ``face_events.py``, which also reaches
the mouth). Every other setting is the face-token sweep's
(``face_tokens.py``: the demo's model and training, the sequence length
following K), so weight 1 is that sweep's K = 4 point
(``benchmarks/results/sweep_face_tokens_2026-12-07.json``).
"""

import pathlib

from facetrack_jax import sweep

METRIC = "tem"
_face_tokens = sweep.load_sweep_file(pathlib.Path(__file__).with_name("face_tokens.py"))


def get_config(size: str = "full"):
  return _face_tokens.get_config(size)


def get_sweep():
  k = sweep.axis("model.compressor.face_tokens", [4])
  w = sweep.axis("train.event_loss_weight", [3.0])
  return sweep.product(k, w, sweep.seeds(3))
