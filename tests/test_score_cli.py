"""`python -m facetrack_jax.metrics.score` and `score_captions`: missing ids are
reported, the intersection is scored, metrics.json is written."""

import json
import subprocess
import sys

import pytest

from facetrack_jax.metrics.score import load_captions, main, score_captions
from tests.conftest import ROOT, SHARED

REFS = [
    {"id": "1", "video": "x/1.mp4", "caption": "The video shows a man with short hair. At the beginning of the "
     "video, he raises his eyebrows. Towards the end of the video, he smiles and nods."},
    {"id": "2", "video": "x/2.mp4", "caption": "The video shows a woman with glasses. At the beginning of the "
     "video, she closes her eyes. As the video progresses, she turns her head to the left."},
    {"id": "3", "video": "x/3.mp4", "caption": "The video shows a man. In the middle of the video, he blinks "
     "and starts speaking. Towards the end of the video, he stops speaking."},
    {"id": "4", "video": "x/4.mp4", "caption": "The video shows a girl. At the beginning of the video, she "
     "looks down. Towards the end of the video, she purses her lips."},
]
PREDS = [
    {"id": "1", "caption": REFS[0]["caption"]},
    {"id": 2, "caption": "The video shows a woman. At the beginning of the video, she turns her head to the "
     "left. Towards the end of the video, she closes her eyes."},
    {"id": "3", "caption": "The video shows a man. At the beginning of the video, he smiles."},
    {"id": "99", "caption": "An extra clip."},
]


def _write(tmp_path, name, data):
  path = tmp_path / name
  path.write_text(json.dumps(data))
  return path


def test_cli_reports_missing_ids_and_writes_metrics(tmp_path, capsys):
  pred, ref = _write(tmp_path, "pred.json", PREDS), _write(tmp_path, "ref.json", REFS)
  out_dir = tmp_path / "out"
  metrics = main(["--pred", str(pred), "--ref", str(ref), "--out", str(out_dir)])
  printed = capsys.readouterr()
  assert "1 ids have no prediction" in printed.err and "['4']" in printed.err
  assert "1 ids are not in the references" in printed.err and "['99']" in printed.err
  assert "n=3 | CIDEr" in printed.out and "TEM" in printed.out
  saved = json.loads((out_dir / "metrics.json").read_text())
  assert saved == metrics
  assert saved["n"] == 3 and saved["missing_in_pred"] == ["4"] and saved["missing_in_ref"] == ["99"]
  assert set(saved) >= {"cider", "rouge_l", "autodq", "tem", "judge"}
  assert set(saved["autodq"]) == set(saved["tem"]) == {"precision", "recall", "f1"}
  per_clip = [json.loads(line) for line in (out_dir / "per_clip.jsonl").read_text().splitlines()]
  assert [c["id"] for c in per_clip] == ["1", "2", "3"]
  # Clip 1 is exact; clip 2 has both events in the wrong order; clip 3 has neither event.
  assert per_clip[0]["autodq_p"] == per_clip[0]["tem_r"] == 1.0
  assert per_clip[1]["autodq_r"] == 1.0 and per_clip[1]["tem_r"] == 0.5
  assert per_clip[2]["autodq_r"] == per_clip[2]["tem_p"] == 0.0
  assert 0 < saved["tem"]["f1"] < saved["autodq"]["f1"] < 1
  # The breakdowns over the 3 scored clips: genders man/woman/man all named right, the
  # glasses of clip 2 missed (what always answering "no glasses" scores).
  per_attribute = json.loads((out_dir / "per_attribute.json").read_text())
  assert per_attribute["gender"]["accuracy"] == 1.0 and per_attribute["gender"]["lift"] == pytest.approx(1 / 3)
  glasses = per_attribute["glasses"]
  assert (glasses["n_ref"], glasses["majority"], glasses["lift"]) == (3, "no", pytest.approx(0.0))
  assert json.loads((out_dir / "per_event.json").read_text())["brows_raise"]["recall"] == 1.0
  assert "| attribute |" in printed.out and "| gender | 3 | 1.00 | man | 0.67 | +0.33 | 1.00 |" in printed.out


def test_cli_runs_as_a_module(tmp_path):
  ref = _write(tmp_path, "ref.json", REFS)
  run = subprocess.run([sys.executable, "-m", "facetrack_jax.metrics.score", "--pred", str(ref), "--ref", str(ref)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert run.returncode == 0, run.stderr
  assert "AutoDQ 1.000" in run.stdout and "TEM 1.000" in run.stdout
  assert json.loads((tmp_path / "metrics.json").read_text())["rouge_l"] == pytest.approx(1.0)


def test_bad_files_are_named(tmp_path):
  for data, message in (({"1": "x"}, "expected a JSON list"), ([{"id": "1"}], "entry 0 lacks"),
                        ([{"id": "1", "caption": "a"}, {"id": 1, "caption": "b"}], "occurs more than once"),
                        ([{"id": "1", "caption": None}], "non-string caption")):
    with pytest.raises(ValueError, match=message):
      load_captions(_write(tmp_path, "bad.json", data))
  with pytest.raises(FileNotFoundError, match="does not exist"):
    load_captions(tmp_path / "nope.json")
  with pytest.raises(ValueError, match="share no id"):
    score_captions({"a": "he smiles"}, {"b": "he smiles"})


def test_score_captions_on_real_references():
  path = SHARED / "fecbench" / "test_dev_half.json"
  if not path.exists():
    pytest.skip(f"FEC-Bench captions not found at {path} (shared/ is absent)")
  refs = dict(list(load_captions(path).items())[:60])
  m = score_captions(refs, refs, "offline", per_clip=True)
  assert m["n"] == 60 and m["missing_in_pred"] == m["missing_in_ref"] == []
  assert m["cider"] == pytest.approx(10.0) and m["rouge_l"] == pytest.approx(1.0)
  assert m["autodq"]["f1"] == m["tem"]["f1"] == 1.0
  assert set(m["per_clip"]) == set(refs)
