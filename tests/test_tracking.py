"""data_prep/track.py and main_character.py: linking, gap bridging, scene
cuts, re-linking, and the main-character rule.

Association and bridging are checked on hand-made detections (exact
expectations); scene cuts and re-linking also on a real video with drawn
faces run through the whole pipeline (Haar detector included).
"""

import cv2
import numpy as np
import pytest

from data_prep import detect, main_character, pipeline, track, video
from tests.test_video import draw_face, write_video


def _unit(seed, d=256):
  """A unit appearance descriptor; different seeds share no histogram bins."""
  v = np.zeros(d, np.float32)
  v[8 * seed:8 * seed + 8] = np.random.default_rng(seed).uniform(0.5, 1.0, 8)
  return v / np.linalg.norm(v)


def _moving_face(num_steps, missing=(), x0=40.0, speed=2.0, side=40.0, app_seed=0, y0=50.0):
  """One face moving right at ``speed`` px per frame; no detection at ``missing`` steps."""
  dets, apps = [], []
  for f in range(num_steps):
    if f in missing:
      dets.append(np.zeros((0, 5), np.float32))
      apps.append(np.zeros((0, 256), np.float32))
    else:
      x = x0 + speed * f
      dets.append(np.array([[x, y0, x + side, y0 + side, 5.0]], np.float32))
      apps.append(_unit(app_seed)[None])
  return dets, apps


def _merge(*streams):
  return ([np.concatenate(ds) for ds in zip(*[s[0] for s in streams])],
          [np.concatenate(a) for a in zip(*[s[1] for s in streams])])


# ---------------------------------------------------------------- geometry

def test_box_iou_and_nms():
  a = np.array([[0, 0, 10, 10]], np.float32)
  b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 5, 10]], np.float32)
  np.testing.assert_allclose(detect.box_iou(a, b)[0], [1.0, 50 / 150, 0.0, 0.5])
  dets = np.array([[0, 0, 40, 40, 3], [8, 8, 30, 30, 5], [100, 0, 140, 40, 2]], np.float32)
  kept = detect.nms(dets)   # the big box holding the small one goes (higher score wins)
  np.testing.assert_array_equal(kept[:, 4], [5, 2])


# ---------------------------------------------------------------- bridging

def test_short_gap_bridged_by_interpolation_long_gap_not():
  frames = np.arange(30)
  dets, apps = _moving_face(30, missing={5, 6, 15, 16, 17, 18, 19})
  tracks = track.build_tracks(frames, dets, apps, np.array([], np.int64), max_gap=3,
                              relink_similarity=1.01)    # re-linking off
  assert [(int(t.frames[0]), int(t.frames[-1])) for t in tracks] == [(0, 14), (20, 29)]
  first = tracks[0]
  np.testing.assert_array_equal(np.flatnonzero(~first.observed), [5, 6])
  for f in (5, 6):   # linear motion: the bridged box is exactly where the face was
    box, observed = first.box_at(f)
    assert not observed
    np.testing.assert_allclose(box, [40 + 2 * f, 50, 80 + 2 * f, 90], atol=1e-4)
  assert all(t.box_at(f) is None for t in tracks for f in range(15, 20))   # 5 > max_gap

  # a smaller max_gap splits at the 2-frame gap too
  tight = track.build_tracks(frames, dets, apps, np.array([], np.int64), max_gap=1,
                             relink_similarity=1.01)
  assert [(int(t.frames[0]), int(t.frames[-1])) for t in tight] == [(0, 4), (7, 14), (20, 29)]

  # re-linking joins the pieces into one person, but still invents no box in the long gap
  joined = track.build_tracks(frames, dets, apps, np.array([], np.int64), max_gap=3)
  assert len(joined) == 1 and joined[0].segments == [(0, 14), (20, 29)]
  assert all(joined[0].box_at(f) is None for f in range(15, 20))


def test_two_faces_keep_their_ids_through_misses():
  frames = np.arange(20)
  a = _moving_face(20, missing={4, 11}, x0=20, app_seed=1)
  b = _moving_face(20, missing={7}, x0=110, app_seed=2)
  dets, apps = _merge(a, b)
  tracks = track.build_tracks(frames, dets, apps, np.array([], np.int64))
  assert len(tracks) == 2
  for t, x0 in zip(tracks, (20, 110)):
    assert len(t.frames) == 20
    np.testing.assert_allclose(t.boxes[:, 0], x0 + 2 * frames, atol=1e-4)


def test_cut_splits_and_relinks_by_appearance():
  frames = np.arange(20)
  same = _moving_face(20)                                      # same face over a cut at 10
  tracks = track.build_tracks(frames, *same, np.array([10]))
  assert len(tracks) == 1 and tracks[0].segments == [(0, 9), (10, 19)]

  other = _moving_face(10, app_seed=0), _moving_face(10, app_seed=7)
  dets = other[0][0] + other[1][0]
  apps = other[0][1] + other[1][1]
  tracks = track.build_tracks(frames, dets, apps, np.array([10]))
  assert [t.segments for t in tracks] == [[(0, 9)], [(10, 19)]]  # different person: kept apart

  # without the cut, the appearance gate alone stops the link
  tracks = track.build_tracks(frames, dets, apps, np.array([], np.int64))
  assert len(tracks) == 2


def test_identity_describes_all_tracklet_ends_in_one_call():
  """With face descriptors, every tracklet's first and last face go through
  the network in one batch; the split check and re-linking then use them
  (a person who changes mid-tracklet -- a missed cut -- costs a few more)."""
  from data_prep import identity
  calls = []
  person = lambda step: 0 if step < 10 else 1      # the face changes person at step 10

  def describe(faces):
    calls.append([s for s, _ in faces])
    return np.stack([np.eye(128, dtype=np.float32)[person(s)] for s, _ in faces])

  frames = np.arange(20)
  face, other = _moving_face(20), _moving_face(20, y0=150.0, app_seed=3)   # no cut found
  linker = identity.IdentityLinker(describe, distance=0.6)
  tracks = track.build_tracks(frames, *_merge(face, other), np.array([], np.int64),
                              identity=linker)
  assert sorted(calls[0]) == [0, 0, 19, 19]          # the ends of both tracklets, one call
  assert linker.splits == 2 and all(len(c) == 1 for c in calls[1:])   # bisection: one each
  assert sorted(t.segments for t in tracks) == [[(0, 9)], [(0, 9)], [(10, 19)], [(10, 19)]]


def test_relink_never_merges_people_seen_together():
  spans = [(0, 10), (5, 15), (20, 30)]
  apps = np.stack([_unit(0), _unit(0), _unit(0)])
  groups = track.relink(spans, apps @ apps.T, 0.8)
  assert groups[0] != groups[1] and groups[2] in (groups[0], groups[1])


def test_false_positive_blips_are_dropped():
  frames = np.arange(12)
  dets, apps = _moving_face(12)
  dets[5] = np.concatenate([dets[5], [[200, 10, 230, 40, 1.0]]]).astype(np.float32)
  apps[5] = np.concatenate([apps[5], _unit(9)[None]])
  tracks = track.build_tracks(frames, dets, apps, np.array([], np.int64), min_hits=2)
  assert len(tracks) == 1


# -------------------------------------------------------------- scene cuts

X = dict(skin=(226, 182, 146), hair=(60, 40, 30))
Y = dict(skin=(198, 148, 106), hair=(20, 20, 20))


def _scene(rng, bg, faces, n, h=240, w=320, speed=2, pan=0):
  """n frames: a noisy backdrop with a few panels (moving ``pan`` px per frame
  to the left) and drawn faces moving ``speed`` px per frame to the right."""
  base = np.clip(np.array(bg)[None, None] + rng.normal(0, 6, (h, w + pan * n, 3)), 0, 255)
  for _ in range(4):
    x, y = int(rng.integers(0, base.shape[1] - 40)), int(rng.integers(0, h - 40))
    base[y:y + 40, x:x + 40] = np.clip(np.array(bg) + rng.normal(0, 30, 3), 0, 255)
  base = base.astype(np.uint8)
  out = []
  for i in range(n):
    img = np.ascontiguousarray(base[:, pan * i:pan * i + w])
    for cx, cy, r, look in faces:
      draw_face(img, cx + speed * i, cy, r, **look)
    out.append(img)
  return out


def three_shots():
  """Shot A (person X), a cut to shot B (person Y), a cut back to A (X larger,
  with Y small in a corner): 12 frames each."""
  rng = np.random.default_rng(0)
  return np.stack(_scene(rng, (90, 120, 150), [(100, 120, 36, X)], 12)
                  + _scene(rng, (170, 150, 100), [(200, 110, 40, Y)], 12)
                  + _scene(rng, (90, 120, 150), [(130, 115, 38, X), (260, 60, 24, Y)], 12))


def test_scene_cuts_found_and_motion_is_not_a_cut():
  np.testing.assert_array_equal(track.scene_cuts(three_shots()), [12, 24])
  rng = np.random.default_rng(1)
  fast = np.stack(_scene(rng, (90, 120, 150), [(60, 120, 36, X)], 20, speed=9, pan=12))
  assert len(track.scene_cuts(fast)) == 0   # fast motion and a fast pan are not cuts


def test_scene_cuts_from_frames_shrunk_on_decode(tmp_path):
  """The pipeline finds cuts on every frame shrunk on decode
  (``decode_video(small_factor=)``): from the RGB frames when most are kept,
  else straight from YUV. The same cuts either way."""
  k = track.SIGNATURE_SHRINK
  rng = np.random.default_rng(1)
  fast = np.stack(_scene(rng, (90, 120, 150), [(60, 120, 36, X)], 20, speed=9, pan=12))
  for name, frames, cuts in (("shots", three_shots(), [12, 24]), ("fast", fast, [])):
    path = write_video(tmp_path / f"{name}.mp4", frames)
    for keep in (None, lambda n: [0, n - 1]):   # every frame to RGB / two of them
      v = video.decode_video(path, keep=keep, small_factor=k)
      assert len(v.frames) == (2 if keep else len(frames))
      np.testing.assert_array_equal(track.scene_cuts(v.small, shrunk=True), cuts)
    np.testing.assert_array_equal(track.scene_cuts(video.decode_video(path).frames), cuts)


def test_frame_signatures_of_stacked_frames_equal_one_by_one():
  """frame_signatures shrinks all frames in one OpenCV call; each frame's
  histogram and thumbnail must be exactly those of that frame alone."""
  rng = np.random.default_rng(2)
  for h, w in ((240, 320), (237, 319), (37, 90), (720, 1280)):   # 237: rows would mix
    frames = rng.integers(0, 256, (3, h, w, 3), dtype=np.uint8)
    frames[1] //= 3                                   # frames that differ a lot
    hist, thumb = track.frame_signatures(frames)
    for i, f in enumerate(frames):
      sub = cv2.resize(f, ((w + 3) // 4, (h + 3) // 4), interpolation=cv2.INTER_NEAREST)
      q = sub >> 6
      ref = np.bincount(((q[..., 0] << 4) | (q[..., 1] << 2) | q[..., 2]).ravel(), minlength=64)
      np.testing.assert_array_equal(hist[i], (ref / ref.sum()).astype(np.float32))
      np.testing.assert_array_equal(
          thumb[i], cv2.resize(sub, (16, 16), interpolation=cv2.INTER_AREA) / np.float32(255))


def test_pipeline_splits_at_cuts_and_relinks_the_same_person(tmp_path):
  path = write_video(tmp_path / "shots.mp4", three_shots())
  res = pipeline.process_video(path, pipeline.PrepConfig(num_frames=8))
  np.testing.assert_array_equal(res.cuts, [12, 24])
  main = res.tracks[res.chosen_track]
  assert main.segments == [(0, 11), (24, 35)]          # X, re-linked across shot B
  assert main.observed.mean() > 0.9
  # the sampled frames inside shot B have no main face; the others do
  in_b = (res.sampled >= 12) & (res.sampled < 24)
  np.testing.assert_array_equal(res.face_mask, ~in_b)
  # Y, big in shot B and small in the corner of the last shot: one person, never X
  others = [t for t in res.tracks if t.track_id != res.chosen_track]
  assert [t.segments for t in others] == [[(12, 23), (24, 35)]]


def test_pipeline_on_a_long_clip_converts_only_the_detection_frames(tmp_path):
  """12 detection frames of 36: only they are kept as RGB, the cuts come from
  frames shrunk straight from YUV, and the result is the same story."""
  path = write_video(tmp_path / "shots.mp4", three_shots())
  res = pipeline.process_video(path, pipeline.PrepConfig(num_frames=4, max_detect_frames=12))
  assert res.stats["frames_decoded"] == 36 and res.stats["frames_kept"] == 12
  np.testing.assert_array_equal(res.cuts, [12, 24])
  main = res.tracks[res.chosen_track]
  assert main.segments == [(1, 10), (25, 34)]          # X, re-linked across shot B
  np.testing.assert_array_equal(res.face_mask, [True, False, False, True])


# ------------------------------------------------------------ main character

def _track(tid, frames, box, app_seed=0):
  frames = np.asarray(frames)
  boxes = np.tile(np.asarray(box, np.float32), (len(frames), 1))
  ones = np.ones(len(frames))
  return track.Track(tid, frames, boxes, ones.astype(bool), ones.astype(np.float32),
                     _unit(app_seed), [(int(frames[0]), int(frames[-1]))])


def test_main_character_rule():
  hw = (240, 320)
  central = _track(0, range(20), [130, 90, 190, 150])          # whole clip, 60 px, centred
  big_short = _track(1, range(6), [100, 60, 220, 180])           # 120 px, 30% of the clip
  small_corner = _track(2, range(20), [0, 0, 30, 30])            # whole clip, small, in a corner
  chosen, scores = main_character.choose_main([central, big_short, small_corner], 20, hw)
  assert chosen == 0
  s = {d["track_id"]: d for d in scores}
  assert s[1]["size"] == 1.0 and s[0]["size"] == pytest.approx(0.5)
  assert s[0]["presence"] == 1.0 and s[1]["presence"] == pytest.approx(0.3)
  # presence x size: a face twice as big wins only if it is there more than half as long
  big_long = _track(1, range(12), [100, 60, 220, 180])
  assert main_character.choose_main([central, big_long], 20, hw)[0] == 1
  # centrality decides between equals
  left = _track(0, range(20), [20, 90, 80, 150])
  mid = _track(1, range(20), [130, 90, 190, 150])
  assert main_character.choose_main([left, mid], 20, hw)[0] == 1
  # exact tie (mirror images): the earlier, then the lower id
  a, b = _track(0, range(20), [40, 90, 100, 150]), _track(1, range(20), [220, 90, 280, 150])
  assert main_character.choose_main([a, b], 20, hw)[0] == 0
  assert main_character.choose_main([b, a], 20, hw)[0] == 0
  late = _track(0, range(1, 21), [40, 90, 100, 150])
  assert main_character.choose_main([late, b], 21, hw)[0] == 1
  assert main_character.choose_main([], 20, hw) == (None, [])
