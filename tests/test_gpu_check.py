"""The GPU check runs end to end at tiny shapes on CPU (``--smoke``), in a
process where the packages the GPU image lacks cannot be imported, so it is
known to work before a GPU is lent."""
import json
import os
import subprocess
import sys

from tests.conftest import ROOT

# Absent from the lent GPU image (../shared/DESIGN-NOTES.md, "On a lent H200").
ABSENT = ("grain", "tensorflow_datasets", "array_record", "av", "tensorboardX",
          "pycocoevalcap", "rouge_score")


def test_gpu_check_smoke_runs_every_part_without_the_absent_packages(tmp_path):
  out = tmp_path / "gpu.json"
  code = ("import runpy, sys\n"
          f"for m in {ABSENT!r}: sys.modules[m] = None   # import m -> ImportError\n"
          f"sys.argv = ['gpu_check', '--smoke', '--out', {str(out)!r}, '--copy-to', "
          f"{str(tmp_path / 'copy')!r}]\n"
          "runpy.run_module('benchmarks.gpu_check', run_name='__main__')\n")
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="", PYTHONPATH=str(ROOT))
  proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  r = json.loads(out.read_text())
  assert r["errors"] == [] and r["skipped"] == [], (r["errors"], r["skipped"])
  assert r["ceilings"]["matmul"]["flops_per_s"] > 0 and r["ceilings"]["read"]["bytes_per_s"] > 0
  assert {(t["attention"], t["remat"]) for t in r["train"]} == {
      ("einsum", "full"), ("dot_product", "save_dot_except_mlp")}
  for t in r["train"]:
    assert t["model_flops_per_s"] > 0 and t["xla_temporaries_per_example"] > 0
  assert {(p["attention"], p["batch"]) for p in r["prefill"]} == {
      (a, 1) for a in ("einsum", "dot_product", "hf_sdpa")}
  assert {d["attention"] for d in r["decode"]} == {"einsum", "dot_product", "hf_sdpa"}
  assert all("bandwidth_fraction" in d for d in r["decode"])
  md = out.with_suffix(".md").read_text()
  assert "## Train step" in md and "## Prefill" in md and "## Issue 24's targets" in md
  assert (tmp_path / "copy" / "gpu.md").read_text() == md
