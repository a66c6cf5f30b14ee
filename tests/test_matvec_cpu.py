"""The few-row matmul benchmark (issue 19 §3) runs end to end on the tiny LM:
every variant, PyTorch's included, computes the same chain (the benchmark
checks it before timing), one-row-only variants are left out at more rows,
and bad arguments are refused with the argument named."""
import json

import pytest

pytest.importorskip("torch")

from benchmarks import matvec_cpu  # noqa: E402


def test_every_variant_at_one_and_more_rows(tmp_path):
  out = tmp_path / "mv.json"
  assert matvec_cpu.main(["--config", "tiny", "--rows", "1,3", "--repeats", "1",
                          "--out", str(out)]) == 0
  r = json.loads(out.read_text())
  got = {(x["variant"], x["dtype"], x["rows"]) for x in r["results"]}
  dtypes = ("float32", "bfloat16")
  assert got == ({(v, d, 1) for v in matvec_cpu.VARIANTS for d in dtypes}
                 | {(v, d, 3) for v in ("dot", "wT", "torch") for d in dtypes})
  for x in r["results"]:
    assert x["ms"] > 0 and x["of_bandwidth"] > 0
    assert x["weight_bytes"] == r["results"][0]["weight_bytes"] // (
        2 if x["dtype"] == "bfloat16" else 1)
  assert "| 3 | torch/float32 |" in out.with_suffix(".md").read_text()


def test_a_variant_that_computes_something_else_fails_before_timing(monkeypatch):
  right = matvec_cpu.matvec

  def matvec(variant):
    mv = right(variant)
    return (lambda x, w: 1.1 * mv(x, w)) if variant == "wT" else mv
  monkeypatch.setattr(matvec_cpu, "matvec", matvec)
  with pytest.raises(AssertionError, match="wT/float32 at 1 rows differs from dot/float32"):
    matvec_cpu.run("tiny", repeats=1, variants=("dot", "wT"), dtypes=("float32",))


@pytest.mark.parametrize("args, message", [
    (["--rows", "1,x"], "--rows '1,x'"),
    (["--variants", "dot,fast"], "unknown ['fast']"),
    (["--variants", "vec"], "must include dot"),
])
def test_bad_arguments_name_the_argument(args, message, capsys):
  with pytest.raises(SystemExit) as e:
    matvec_cpu.main(["--config", "tiny", *args])
  assert e.value.code == 2 and message in capsys.readouterr().err
