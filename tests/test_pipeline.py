"""data_prep/pipeline.py end to end (real decoder, Haar detector, tracker),
crop geometry, the contact sheet, and accuracy on generated synthetic clips
against their ground truth."""

import json
import pathlib

import cv2
import numpy as np
import pytest

from data_prep import contact_sheet, crop, detect, pipeline
from data_prep.errors import ClipError
from tests.test_video import draw_face, write_video

W, H = 320, 240
MAIN = dict(cx=150, cy=115, r=38)          # big, central; occluded at frames 10-11 and 14-19
EXTRA = dict(cx=275, cy=50, r=20)          # small, in a corner, there all the time
BG = (90, 120, 150)
SKIN = (226, 182, 146)


def _main_box(i):
  cx = MAIN["cx"] + i
  return [cx - MAIN["r"], MAIN["cy"] - MAIN["r"], cx + MAIN["r"], MAIN["cy"] + MAIN["r"]]


HIDDEN = {10, 11, 14, 15, 16, 17, 18, 19}   # back at 20: a keyframe (every 4th) finds it again


def _two_faces(n=24, hidden=HIDDEN):
  rng = np.random.default_rng(0)
  base = np.clip(np.array(BG) + rng.normal(0, 5, (H, W, 3)), 0, 255).astype(np.uint8)
  frames = []
  for i in range(n):
    img = base.copy()
    draw_face(img, EXTRA["cx"], EXTRA["cy"], EXTRA["r"], skin=(198, 148, 106), hair=(20, 20, 20))
    if i not in hidden:
      draw_face(img, MAIN["cx"] + i, MAIN["cy"], MAIN["r"], skin=SKIN)
    frames.append(img)
  return np.stack(frames)


@pytest.fixture(scope="module")
def two_faces(tmp_path_factory):
  path = write_video(tmp_path_factory.mktemp("clip") / "two.mp4", _two_faces())
  return path, pipeline.process_video(path, pipeline.PrepConfig())


def _iou(a, b):
  a, b = np.asarray(a, float), np.asarray(b, float)
  iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
  ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
  return iw * ih / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih)


def test_process_video_outputs(two_faces):
  _, res = two_faces
  cfg = pipeline.PrepConfig()
  T, S, F = cfg.num_frames, cfg.face_size, cfg.frame_size
  assert res.frames.shape == (T, F, F, 3) and res.frames.dtype == np.uint8
  assert res.faces.shape == (T, S, S, 3) and res.faces.dtype == np.uint8
  assert res.face_mask.shape == (T,) and res.face_mask.dtype == bool
  assert res.face_boxes.shape == (T, 4) and res.face_boxes.dtype == np.float32
  np.testing.assert_array_equal(res.sampled, [1, 4, 7, 10, 13, 16, 19, 22])
  assert res.stats["frames_decoded"] == 24 and set(res.stats["seconds"]) == {
      "decode", "detect", "track", "crop"}
  # frames 10-11 hidden (<= max_gap): bridged; 14-19 hidden (> max_gap): no face
  np.testing.assert_array_equal(res.face_mask, [1, 1, 1, 1, 1, 0, 0, 1])
  np.testing.assert_array_equal(res.face_bridged, [0, 0, 0, 1, 0, 0, 0, 0])
  assert not res.faces[~res.face_mask].any() and not res.face_boxes[~res.face_mask].any()
  # the chosen track is the big central face, re-linked after the long gap
  main = res.tracks[res.chosen_track]
  assert main.segments == [(0, 13), (20, 23)]
  scale = np.array([W, H, W, H])
  for t in np.flatnonzero(res.face_mask):
    assert _iou(res.face_boxes[t] * scale, _main_box(res.sampled[t])) > 0.7, t
    if not res.face_bridged[t]:   # (a bridged crop shows where the hidden face was: background)
      centre = res.faces[t, S // 2 - 2:S // 2 + 2, S // 2 - 2:S // 2 + 2].reshape(-1, 3).mean(0)
      assert np.abs(centre - SKIN).max() < 40, centre     # the crop is centred on skin
  # global frames: the whole picture, squashed to F x F
  assert np.abs(res.frames[0].reshape(-1, 3).mean(0) - cv2.resize(
      _two_faces()[1], (F, F), interpolation=cv2.INTER_AREA).reshape(-1, 3).mean(0)).max() < 4


class _CountingDetector:
  """The real Haar detector; records on which frame each kind of search ran."""

  def __init__(self, frames, **kwargs):
    self.haar, self.frames, self.full, self.near = detect.HaarDetector(**kwargs), frames, [], []

  def _index(self, frame):
    return next(i for i, f in enumerate(self.frames) if f is frame)

  def __call__(self, frame):
    self.full.append(self._index(frame))
    return self.haar(frame)

  def detect_near(self, frame, boxes):
    self.near.append((self._index(frame), len(boxes)))
    return self.haar.detect_near(frame, boxes)


def test_keyframes_search_near_only_the_faces_the_full_search_missed():
  frames = list(_two_faces(n=8, hidden={4}))       # the main face is away on keyframe 4
  det = _CountingDetector(frames, scale_factor=1.2)   # a finer step: the corner face is small
  dets, keys = detect.detect_clip(det, frames, np.arange(8), np.zeros(0, np.int64))
  np.testing.assert_array_equal(np.flatnonzero(keys), [0, 4])
  assert det.full == [0, 4]
  near = dict(det.near)
  # frame 4: the corner face is found again by the full search, so only the
  # main face (seen on frame 3) is looked for near its last box
  assert near[4] == 1
  assert all(near[f] == 2 for f in (1, 2, 3)) and 0 not in near
  assert [len(d) for d in dets] == [2, 2, 2, 2, 1, 2, 2, 2]


def test_keyframes_count_from_the_last_cut():
  """A cut starts a keyframe, and the next full search comes ``keyframe_every``
  detection frames after it, not on the fixed grid (0, 4, 8, ...)."""
  frames = list(_two_faces(n=12, hidden=set()))
  det = _CountingDetector(frames, scale_factor=1.2)
  _, keys = detect.detect_clip(det, frames, np.arange(12), np.array([3]), keyframe_every=4)
  np.testing.assert_array_equal(np.flatnonzero(keys), [0, 3, 7, 11])
  assert det.full == [0, 3, 7, 11] and 4 not in det.full and 8 not in det.full


def test_detections_come_in_the_same_order_every_time():
  """OpenCV's threads return faces in a varying order; the detector sorts them
  (x0 first), so a frame always gives the same rows and the same tracks."""
  rng = np.random.default_rng(1)
  img = np.clip(np.array(BG) + rng.normal(0, 5, (H, W, 3)), 0, 255).astype(np.uint8)
  for cx, cy in ((60, 180), (160, 120), (260, 60)):   # left to right, bottom to top
    draw_face(img, cx, cy, 32, skin=SKIN)
  det = detect.HaarDetector()
  runs = [det(img) for _ in range(20)]
  assert len(runs[0]) == 3
  assert np.all(np.diff(runs[0][:, 0]) > 0), runs[0]
  assert all(np.array_equal(r, runs[0]) for r in runs)
  near = [det.detect_near(img, runs[0][::-1, :4]) for _ in range(20)]
  assert len(near[0]) == 3 and all(np.array_equal(r, near[0]) for r in near)


def test_score_against_ground_truth(two_faces):
  _, res = two_faces
  hidden = HIDDEN
  extra = [EXTRA["cx"] - EXTRA["r"], EXTRA["cy"] - EXTRA["r"], EXTRA["cx"] + EXTRA["r"],
           EXTRA["cy"] + EXTRA["r"]]
  faces = [{"boxes": [None if i in hidden else _main_box(i) for i in range(24)]},
           {"boxes": [extra] * 24}]
  s = pipeline.score_against_ground_truth(res, {"main": 0, "faces": faces})
  assert s["main_correct"] and s["mean_iou"] > 0.7 and s["frames_compared"] == 5
  assert s["recall"] == 1.0            # every sampled frame with a visible main face has a box
  wrong = pipeline.score_against_ground_truth(res, {"main": 1, "faces": faces})
  assert not wrong["main_correct"] and wrong["mean_iou"] < 0.1


def test_one_frame_video_gives_t_copies(tmp_path):
  res = pipeline.process_video(write_video(tmp_path / "still.mp4", _two_faces(n=1)))
  assert res.stats["frames_decoded"] == 1
  np.testing.assert_array_equal(res.sampled, np.zeros(8))
  assert res.face_mask.all() and (res.faces == res.faces[0]).all()
  assert (res.frames == res.frames[0]).all()


def test_no_face_and_bad_files_raise(tmp_path):
  rng = np.random.default_rng(0)
  empty = np.clip(np.array(BG) + rng.normal(0, 5, (12, H, W, 3)), 0, 255).astype(np.uint8)
  with pytest.raises(ClipError) as e:
    pipeline.process_video(write_video(tmp_path / "room.mp4", empty))
  assert e.value.stage == "detect" and "no face found" in e.value.reason
  with pytest.raises(ClipError) as e:
    pipeline.process_video(tmp_path / "nope.mp4")
  assert e.value.stage == "open"


# ------------------------------------------------------------------ crops

def _coord_frame(h=200, w=240):
  """frame[y, x] = (x, y, 7): every pixel says where it came from."""
  f = np.zeros((h, w, 3), np.uint8)
  f[..., 0] = np.arange(w)[None, :]
  f[..., 1] = np.arange(h)[:, None]
  f[..., 2] = 7
  return f


def test_crop_geometry():
  np.testing.assert_allclose(crop.square_box(np.array([10, 20, 50, 40]), 0.25), [0, 0, 60, 60])
  f = _coord_frame()
  c = crop.crop_square(f, np.array([50, 60, 90, 100]), 0.0, 40)     # inside: exact pixels
  np.testing.assert_array_equal(c, f[60:100, 50:90])
  c = crop.crop_square(f, np.array([60, 70, 80, 90]), 0.5, 40)       # margin: 20 -> 40 px square
  np.testing.assert_array_equal(c, f[60:100, 50:90])
  # across the top-left border: the outside is black, the inside is where it belongs
  c = crop.crop_square(f, np.array([-10, -20, 30, 20]), 0.0, 40)
  assert not c[:20].any() and not c[:, :10].any()
  np.testing.assert_array_equal(c[20:, 10:], f[0:20, 0:30])
  # across the bottom-right border
  c = crop.crop_square(f, np.array([220, 180, 260, 220]), 0.0, 40)
  np.testing.assert_array_equal(c[:20, :20], f[180:200, 220:240])
  assert not c[20:].any() and not c[:, 20:].any()
  # a non-square box gives a square around its longer side, resized to S
  c = crop.crop_square(f, np.array([100, 90, 140, 110]), 0.0, 20)   # 40 x 20 box -> 40 px square
  assert c.shape == (20, 20, 3)
  np.testing.assert_allclose(c[..., 0].mean(), 119.5, atol=0.6)
  np.testing.assert_allclose(c[..., 1].mean(), 99.5, atol=0.6)
  g = crop.resize_frame(f, 64)
  assert g.shape == (64, 64, 3)
  assert abs(int(g[0, -1, 0]) - 236) < 4 and abs(int(g[-1, 0, 1]) - 196) < 4


# ----------------------------------------------------------- contact sheet

def test_shrinking_by_halves_matches_one_area_step():
  frame = _two_faces(n=1)[0]                                   # 240 x 320, two faces
  for size in (64, 100, 32):
    out = crop.resize_frame(frame, size).astype(int)
    ref = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(out - ref).mean() < 1.0, size


def test_contact_sheet_png(two_faces, tmp_path):
  _, res = two_faces
  path = tmp_path / "sheet.png"
  contact_sheet.write_contact_sheet(res, path, title="two faces")
  img = cv2.imread(str(path))[..., ::-1]
  assert path.stat().st_size > 20_000
  tile_w = round(res.preview.shape[2] * contact_sheet.TILE_H / res.preview.shape[1])
  assert img.shape[1] == 8 * (tile_w + contact_sheet.PAD) + contact_sheet.PAD
  is_colour = lambda rgb: (np.abs(img.astype(int) - rgb).sum(-1) < 30)
  head = 56 + contact_sheet.PAD
  frames_row = slice(head, head + contact_sheet.TILE_H)
  crops_row = slice(head + contact_sheet.TILE_H + contact_sheet.PAD,
                    head + contact_sheet.TILE_H + contact_sheet.PAD + 100)
  tile_of = lambda t: slice(contact_sheet.PAD + t * (tile_w + contact_sheet.PAD),
                            contact_sheet.PAD + t * (tile_w + contact_sheet.PAD) + tile_w)
  for t in range(8):
    if res.face_mask[t] and not res.face_bridged[t]:     # main box drawn, thick green
      assert is_colour(contact_sheet.CHOSEN)[frames_row, tile_of(t)].sum() > 200, t
    if res.face_bridged[t]:                              # dashed orange
      assert is_colour(contact_sheet.BRIDGED)[frames_row, tile_of(t)].sum() > 100, t
    if not res.face_mask[t]:                             # the X
      assert is_colour(contact_sheet.CUT)[crops_row, tile_of(t)].sum() > 200, t


# --------------------------------------------------- synthetic ground truth

def test_accuracy_on_synthetic_clips(tmp_path):
  """Acceptance bar: main character right on >= 95% of clips, box IoU >= 0.7."""
  synthetic = pytest.importorskip("data_prep.synthetic")
  n = 40
  synthetic.generate(str(tmp_path), num_clips=n, seed=11)
  scores = []
  for rec in json.loads((tmp_path / "annotations.json").read_text()):
    gt = json.loads((tmp_path / "ground_truth" / f"{rec['id']}.json").read_text())
    try:
      res = pipeline.process_video(tmp_path / rec["video"], pipeline.PrepConfig())
      scores.append(pipeline.score_against_ground_truth(res, gt))
    except ClipError:
      scores.append({"main_correct": False, "mean_iou": 0.0})
  main = np.mean([s["main_correct"] for s in scores])
  iou = np.mean([s["mean_iou"] for s in scores])
  assert main >= 0.95 and iou >= 0.7, (main, iou)
