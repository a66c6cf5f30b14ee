r"""The event loss at weight 3 instead of the demo's 1 (issue 21), with the
face tokens (K = 4) and without them (K = 0, global view only), × 3 seeds.

    python -m facetrack_jax.sweep --sweep configs/sweeps/event_weight.py --workdir W

One seed at weight 3 (K = 4, 2026-12-07) read the events better than weight 1
(TEM 0.514 vs 0.426 on that seed) at some cost in CIDEr; this sweep says
whether it holds over seeds, and whether the face tokens still earn their
place at the weight the demo ends up with (issue 21 §3: global-only vs K = 4
with the chosen settings). Every other setting is the face-token sweep's
(``face_tokens.py``: the demo's model and training, the sequence length
following K), so weight 1 is that sweep's K = 0 and K = 4 points
(``benchmarks/results/sweep_face_tokens_2026-12-07.json``).
"""

import pathlib

from facetrack_jax import sweep

METRIC = "tem"
_face_tokens = sweep.load_sweep_file(pathlib.Path(__file__).with_name("face_tokens.py"))


def get_config(size: str = "full"):
  return _face_tokens.get_config(size)


def get_sweep():
  k = sweep.axis("model.compressor.face_tokens", [0, 4])
  w = sweep.axis("train.event_loss_weight", [3.0])
  return sweep.product(k, w, sweep.seeds(3))
