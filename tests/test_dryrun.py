"""The AOT dry run on the tiny config: 8 fake devices, train and decode steps
compiled for a (2, 2, 2) mesh, nothing materialised; its JSON is consistent."""
import json
import math
import subprocess
import sys

import jax
import pytest

from configs import tiny_synthetic
from facetrack_jax import dryrun, hlo_stats
from tests.conftest import ROOT


def _config():
  c = tiny_synthetic.get_config()
  c.model.scan_layers, c.model.remat = True, "full"
  c.data.max_len = 96
  return c


@pytest.fixture(scope="module")
def report():
  return dryrun.run(_config(), (2, 2, 2), step="both", accelerator="v5e", batch=8)


def test_report_fields_and_shard_bytes(report):
  t = report["train"]
  assert report["mesh"] == {"data": 2, "fsdp": 2, "tensor": 2} and report["devices"] == 8
  # Parameters split over fsdp × tensor = 4; adam keeps two moments of each.
  shards = 4
  total = t["analytic_bytes_per_device"]["params"] * shards
  assert total == 4 * t["num_params"]                      # fp32 params
  assert t["state_bytes_per_device"]["params"] >= total / shards
  assert t["state_bytes_per_device"]["params"] <= 1.3 * total / shards   # small replicated vectors
  assert t["analytic_bytes_per_device"]["optimizer"] == 2 * t["analytic_bytes_per_device"]["params"]
  mem = t["memory"]
  assert mem["peak_estimate"] == (mem["arguments"] + mem["outputs"] - mem["aliased"]
                                  + mem["temporaries"])
  # The arguments are the state (params + optimizer + step) and the batch, per device.
  state = t["state_bytes_per_device"]["params"] + t["state_bytes_per_device"]["optimizer"]
  assert state <= mem["arguments"] <= state * 1.5
  assert t["flops"]["xla_per_device"] > 0 and t["flops"]["model_per_device"] > 0
  assert t["compile_s"] > 0 and t["lower_s"] > 0


def test_collectives_are_counted_per_layer(report):
  coll = report["train"]["collectives"]
  assert set(hlo_stats.KINDS) <= set(coll)
  # FSDP: weights are all-gathered inside the scanned layer loop, once per layer.
  assert coll["all-gather"]["executed"] > coll["all-gather"]["ops"] > 0
  assert any(r["in_loop"] for r in coll["largest"])
  assert coll["unknown_trip_counts"] == 0
  assert hlo_stats.total_link_bytes(coll) > 0


def test_verdict_and_decode(report):
  v = report["train"]["verdict"]
  assert v["accelerator"] == "v5e" and v["fits"]
  assert v["step_s_lower_bound"] == max(v["compute_s"], v["comm_s"], v["hbm_read_s"]) > 0
  d = report["decode"]
  assert d["batch"] == 4 and d["cache_len"] == 96     # default: data × fsdp rows, max_len slots
  assert d["state_bytes_per_device"]["kv_cache"] > 0
  assert d["verdict"]["hbm_read_s"] > 0
  assert report["caveats"] and "CPU" in report["caveats"][0]


def test_hlo_replica_group_spellings():
  assert hlo_stats.group_size("replica_groups={{0,1,2,3},{4,5,6,7}}", 8) == 4
  assert hlo_stats.group_size("replica_groups=[2,4]<=[8]", 8) == 4
  assert hlo_stats.group_size("replica_groups=mesh['axis_0'=2,'axis_1'=4] {'axis_1'}", 8) == 4
  assert hlo_stats.shape_bytes("(f32[2,3]{1,0}, bf16[4])") == 2 * 3 * 4 + 4 * 2


def test_cli_writes_json_and_rejects_bad_input(tmp_path):
  out = tmp_path / "r.json"
  cmd = [sys.executable, "-m", "facetrack_jax.dryrun", "--config", "configs/tiny_synthetic.py",
         "--devices", "4", "--mesh", "fsdp=4", "--step", "decode", "--out", str(out)]
  res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert res.returncode == 0, res.stderr[-2000:]
  r = json.loads(out.read_text())
  assert r["devices"] == 4 and r["mesh"]["fsdp"] == 4 and "decode" in r and "train" not in r
  assert "caveat:" in res.stdout
  bad = subprocess.run(cmd[:-2] + ["--mesh", "fsdp=4,pipeline=2"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
  assert bad.returncode != 0 and "pipeline" in bad.stderr
  with pytest.raises(ValueError, match="not known"):
    dryrun.run(_config(), (8, 1, 1), step="train", accelerator="tpu9")
