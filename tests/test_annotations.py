"""FEC-Bench annotation loading: every bad entry is reported, no good one lost."""

import json

import pytest

from data_prep import annotations as ann
from tests.conftest import SHARED

FECBENCH = SHARED / "fecbench" / "test_dev_half.json"


def test_real_fecbench_file_loads_completely():
  if not FECBENCH.exists():
    pytest.skip(f"{FECBENCH} absent (shared data is not in a fresh clone)")
  raw = json.loads(FECBENCH.read_text())
  entries, errors = ann.load_annotations(FECBENCH)
  assert errors == []
  assert [e.id for e in entries] == [str(r["id"]) for r in raw]
  sources = {e.source for e in entries}
  assert sources <= {"DFEW", "CAER_mp4", "RAVDESS", "MER24", "MAFW", "AFEW-VA", "FERV39k"}
  assert len(sources) >= 3
  assert all(e.caption and e.video.endswith(".mp4") for e in entries)


def test_each_bad_entry_is_one_error_and_good_entries_survive(tmp_path):
  records = [
      {"id": "a", "video": "DFEW/videos/1.mp4", "caption": "He blinks."},
      ["not", "an", "object"],
      {"video": "DFEW/videos/2.mp4", "caption": "No id."},
      {"id": "c", "caption": "No video."},
      {"id": "d", "video": "  ", "caption": "Blank video."},
      {"id": "e", "video": "MAFW/x/e.mp4", "caption": "   "},
      {"id": "f", "video": "MAFW/x/f.mp4"},
      {"id": "a", "video": "DFEW/videos/3.mp4", "caption": "Duplicate id."},
      {"id": 7, "video": "./RAVDESS/actor/7.mp4", "caption": "  Integer id.  "},
      {"id": True, "video": "RAVDESS/8.mp4", "caption": "Boolean id."},
  ]
  path = tmp_path / "ann.json"
  path.write_text(json.dumps(records))
  entries, errors = ann.load_annotations(path)

  assert [(e.id, e.video, e.caption, e.source) for e in entries] == [
      ("a", "DFEW/videos/1.mp4", "He blinks.", "DFEW"),
      ("7", "./RAVDESS/actor/7.mp4", "Integer id.", "RAVDESS")]
  assert all(e.stage == "annotation" for e in errors)
  got = [(e.clip_id, e.path, e.reason) for e in errors]
  assert len(got) == 8
  assert got[0] == (None, f"{path}[1]", "entry #1 is not a JSON object (got list)")
  assert got[1][0] is None and got[1][1] == "DFEW/videos/2.mp4" and "missing 'id'" in got[1][2]
  assert got[2] == ("c", f"{path}[3]", "missing 'video'")
  assert got[3][0] == "d" and "empty or invalid 'video'" in got[3][2]
  assert got[4][:2] == ("e", "MAFW/x/e.mp4") and "empty" in got[4][2]
  assert got[5] == ("f", "MAFW/x/f.mp4", "missing 'caption'")
  assert got[6][:2] == ("a", "DFEW/videos/3.mp4") and "duplicate id" in got[6][2]
  assert got[7][0] is None and "non-empty string" in got[7][2]
  # Each error serialises to the errors.jsonl record.
  assert errors[2].to_json() == {"id": "c", "path": f"{path}[3]", "stage": "annotation",
                                 "reason": "missing 'video'"}


def test_ids_shared_across_files_are_duplicates(tmp_path):
  a, b = tmp_path / "train.json", tmp_path / "test.json"
  a.write_text(json.dumps([{"id": "x", "video": "s/x.mp4", "caption": "c"}]))
  b.write_text(json.dumps([{"id": "x", "video": "s/x2.mp4", "caption": "c"},
                           {"id": "y", "video": "s/y.mp4", "caption": "c"}]))
  seen = {}
  ea, _ = ann.load_annotations(a, seen=seen)
  eb, errs = ann.load_annotations(b, seen=seen)
  assert [e.id for e in ea] == ["x"] and [e.id for e in eb] == ["y"]
  assert len(errs) == 1 and str(a) in errs[0].reason


@pytest.mark.parametrize("content, cause", [
    (None, "cannot read"), ("{not json", "not valid JSON"),
    ('{"id": "a"}', "expected a JSON list")])
def test_unusable_file_raises_naming_it(tmp_path, content, cause):
  path = tmp_path / "bad.json"
  if content is not None:
    path.write_text(content)
  with pytest.raises(ann.AnnotationFileError, match=cause) as info:
    ann.load_annotations(path)
  assert str(path) in str(info.value)


def test_source_is_first_path_component():
  assert ann.source_of("DFEW/videos/2961.mp4") == "DFEW"
  assert ann.source_of("./synthetic/000001.mp4") == "synthetic"
  assert ann.source_of("AFEW-VA\\01\\x.mp4") == "AFEW-VA"
  assert ann.source_of("clip.mp4") == "clip.mp4"


@pytest.mark.parametrize("video, cause", [
    ("../outside.mp4", "'..' component"), ("DFEW/../../etc/x.mp4", "'..' component"),
    ("DFEW\\..\\..\\x.mp4", "'..' component"), ("/etc/passwd", "absolute path"),
    ("\\\\server\\share\\x.mp4", "absolute path"), ("C:/videos/x.mp4", "absolute path"),
    ("DFEW/x\0.mp4", "NUL")])
def test_video_paths_that_escape_the_root_are_rejected_by_name(tmp_path, video, cause):
  path = tmp_path / "ann.json"
  path.write_text(json.dumps([{"id": "bad", "video": video, "caption": "c"},
                              {"id": "ok", "video": "DFEW/..x/1..mp4", "caption": "c"}]))
  entries, errors = ann.load_annotations(path)
  assert [e.id for e in entries] == ["ok"]    # '..' inside a name is just a name
  assert len(errors) == 1 and errors[0].clip_id == "bad" and errors[0].path == video
  assert errors[0].stage == "annotation" and cause in errors[0].reason
  assert repr(video) in errors[0].reason


@pytest.mark.parametrize("clip_id, cause", [
    ("../../etc/cron.d/x", "path separator"), ("a/b", "path separator"),
    ("a\\b", "path separator"), ("..", "not a file name"), (".", "not a file name"),
    ("a\nb", "control character")])
def test_ids_that_cannot_be_file_names_are_rejected_by_name(tmp_path, clip_id, cause):
  path = tmp_path / "ann.json"
  path.write_text(json.dumps([{"id": clip_id, "video": "s/x.mp4", "caption": "c"},
                              {"id": "a..b", "video": "s/y.mp4", "caption": "c"}]))
  entries, errors = ann.load_annotations(path)
  assert [e.id for e in entries] == ["a..b"]
  assert len(errors) == 1 and errors[0].clip_id == clip_id and cause in errors[0].reason
  assert repr(clip_id) in errors[0].reason and errors[0].path == "s/x.mp4"
