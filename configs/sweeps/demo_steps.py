r"""Does the demo need its 1,000 steps? Its held-out loss is lowest at step 600.

    python -m facetrack_jax.sweep --sweep configs/sweeps/demo_steps.py --workdir W

Why: the demo's held-out caption loss (``config.train.eval_every``, 2026-12-07,
fresh clone of dfb63ec) went 0.489, 0.375, 0.349, 0.364, 0.380 at steps 200
to 1,000 while the training loss kept falling (0.52 to 0.22): past step 600
the captioner fits the training captions' wording. If the captions' event and
appearance content (TEM, AutoDQ) holds at 600 steps, the demo could train 40 %
less. Each point is the demo with ``train.num_steps=600`` (its cosine schedule
ends there); the baseline is the demo itself at 1,000 steps
(``event_weight_wide.py``'s ``event_loss_weight=3.0`` runs, 3 seeds: TEM 0.553
± 0.045, AutoDQ 0.616 ± 0.043). Measured (2026-12-07, 3 seeds;
``benchmarks/results/sweep_demo_steps_2026-12-07.md``): no. At 600 steps the
held-out loss ends lower (0.356–0.363 against 0.380) but TEM falls to 0.432 ±
0.006, AutoDQ to 0.494 ± 0.015, CIDEr to 1.56, and 7 of 21 event kinds reach a
lift of +0.3 against 15: the last 400 steps teach the events while the
wording overfits. The demo keeps 1,000 steps; select runs by TEM, not by the
held-out loss.
"""

from facetrack_jax import main as demo

METRIC = "tem"


def get_config(size: str = "full"):
  return demo.demo_config(size)


def get_sweep():
  from facetrack_jax import sweep  # pylint: disable=g-import-not-at-top
  return sweep.product(sweep.axis("train.num_steps", [600]), sweep.seeds(3))
