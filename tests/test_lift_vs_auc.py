"""benchmarks/lift_vs_auc.py: (head AUC, caption lift) pairs per run and
event, the rank correlation, the bands and the scatter."""

import json

import cv2
import numpy as np
import pytest

from benchmarks import lift_vs_auc


def _run(tmp_path, name, auc_lift: dict, head="event"):
  prefix = tmp_path / name
  heads = {head: {k: {"n_pos": 5, "auc": a} for k, (a, _) in auc_lift.items()}}
  heads[head]["never_stated"] = {"n_pos": 0, "auc": float("nan")}      # left out
  events = {k: {"lift": lift} for k, (_, lift) in auc_lift.items()}
  (tmp_path / f"{name}.heads.json").write_text(json.dumps(heads))
  (tmp_path / f"{name}.per_event.json").write_text(json.dumps(events))
  return str(prefix)


def test_pairs_bands_and_scatter(tmp_path):
  a = _run(tmp_path, "a", {"eyes_blink": (0.98, 0.6), "mouth_smile": (0.6, 0.0),
                           "head_nod": (0.92, 0.35)})
  b = _run(tmp_path, "b", {"eyes_blink": (0.96, 0.2), "mouth_smile": (0.75, 0.1)})
  out = tmp_path / "r.json"
  assert lift_vs_auc.main([a, b, "--out", str(out)]) == 0
  r = json.loads(out.read_text())
  assert len(r["pairs"]) == 5                              # the NaN-AUC event is left out
  by_band = {(x["auc_from"], x["auc_to"]): x for x in r["bands"]}
  top = by_band[(0.95, 1.0)]
  assert top["pairs"] == 2 and top["mean_lift"] == pytest.approx(0.4)
  assert top["min_lift"] == pytest.approx(0.2) and top["share_lift_ge_0.3"] == 0.5
  assert by_band[(0.9, 0.95)]["share_lift_ge_0.3"] == 1.0
  # Ranks by AUC 5 1 3 4 2, by lift 5 1 4 3 2: 1 - 6·(1 + 1) / (5·24) = 0.9.
  assert r["spearman"] == pytest.approx(0.9)
  img = cv2.imread(str(out.with_suffix(".png")))
  assert img is not None and img.shape == (480, 720, 3)
  assert (np.abs(img.astype(int) - [160, 70, 20]).sum(-1) < 30).sum() > 20   # mouth points


def test_a_missing_file_or_head_is_named(tmp_path):
  a = _run(tmp_path, "a", {"eyes_blink": (0.98, 0.6)})
  with pytest.raises(KeyError, match="face_event"):
    lift_vs_auc.read_run(a, "face_event")
  folder = tmp_path / "eval" / "1000"
  folder.mkdir(parents=True)
  (folder / "heads.json").write_text((tmp_path / "a.heads.json").read_text())
  with pytest.raises(FileNotFoundError, match="per_event.json"):
    lift_vs_auc.read_run(str(folder), "event")
