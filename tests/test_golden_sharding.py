"""Golden sharding dump (MaxText style): every parameter of the `paper` config,
its logical axes and its PartitionSpec on the reference mesh. A change of the
rule table or of a parameter's axes shows up here, in review."""
import difflib
import pathlib

from configs import paper
from facetrack_jax import sharding
from facetrack_jax.models import summary

GOLDEN = pathlib.Path(__file__).parent / "golden" / "paper_sharding.txt"


def test_paper_sharding_matches_the_golden_file():
  got = summary.sharding_table(paper.get_model_config(),
                               sharding.make_mesh(summary.REFERENCE_MESH))
  want = GOLDEN.read_text()
  diff = "".join(difflib.unified_diff(want.splitlines(True), got.splitlines(True),
                                      "golden", "now", n=0))
  assert not diff, ("the paper config's parameter shardings changed; if that is meant, "
                    "regenerate: python -m facetrack_jax.models.summary --config "
                    f"configs/paper.py --sharding > {GOLDEN.relative_to(GOLDEN.parents[2])}\n"
                    + diff)
  assert len(got.splitlines()) > 50 and "('layers', 'embed', 'mlp')" in got
