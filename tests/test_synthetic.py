"""Synthetic face-video set: scripts, captions, rendering, files, Haar."""

import dataclasses
import json
import re

import av
import cv2
import numpy as np
import pytest

from data_prep.synthetic import __main__ as cli
from data_prep.synthetic import captions, face, people, scene, script, writer
from data_prep.video import sample_indices
from facetrack_jax.events import PHASE_PHRASES, PHASES, SYNTHETIC_EVENTS

CASCADE = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"

# Independent of captions.PHRASES: how each action may be worded.
ACTION_RE = {
    "raise": r"rais|lift|rise", "lower": r"lower|drop", "furrow": r"furrow|knit",
    "blink": r"blink", "close": r"clos|shut", "widen": r"wide", "look": r"look|gaze|eyes move",
    "open": r"open", "smile": r"smil|turn up", "frown": r"frown|turns? down|turning down",
    "press": r"press|tighten", "talk": r"talk|speak", "turn": r"turn", "tilt": r"tilt",
    "nod": r"nod",
}
CONNECTIVES = r", and then |, then |\. Then |, and | and | while "


def _scripts(n, seed=0):
  for i in range(n):
    rng = np.random.default_rng([seed, i])
    yield script.sample_clip_script(rng), rng


def _iou(a, b):
  iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
  ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
  inter = iw * ih
  return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_scripts_follow_the_timing_rules():
  sampled = sample_indices(16, 8)
  bounds = script.phase_bounds(16)
  for s, _ in _scripts(300):
    assert 1 <= len(s.people) <= 3 and 0 <= s.main < len(s.people)
    main = s.main_person
    assert 2 <= len(main.events) <= 6
    assert script.true_events(s) == [
        dataclasses.replace(SYNTHETIC_EVENTS[e.key], phase=e.phase) for e in main.events]
    for p in s.people:
      starts = [e.start for e in p.events]
      assert starts == sorted(starts)
      for e in p.events:
        lo, hi = bounds[PHASES.index(e.phase)]
        assert lo <= e.start <= lo + (hi - lo) // 2 + 1, e
        in_view = np.sum((sampled >= e.start) & (sampled < e.end))
        if e.key == "eyes_blink":   # >= 2 sampled frames shut, then an open one
          assert in_view >= 2 and sampled.max() >= e.end, e
        elif e.key != "mouth_close":
          assert e.end - e.start >= 3 and in_view >= 1, e
    for phase in PHASES:   # distractors do different things
      keys = {e.key for e in main.events if e.phase == phase}
      for i, p in enumerate(s.people):
        if i != s.main:
          assert not keys & {e.key for e in p.events if e.phase == phase}


def test_events_show_up_in_the_face_state():
  neutral = script.FaceState()
  for s, _ in _scripts(100):
    main = s.main_person
    for e in main.events:
      if e.key == "mouth_close":
        assert script.face_state(main, e.start).mouth_open < 0.05
        continue
      state = script.face_state(main, min(e.start + 1, e.end - 1))
      assert state != dataclasses.replace(neutral, yaw=state.yaw, roll=state.roll) or (
          e.event.part == "head"), e


def test_boxes_frame_the_drawn_face():
  """Pixels that change when the main character is removed fill the ground
  truth box, and not the box shifted sideways; partial renders match."""
  for s, _ in _scripts(4, seed=3):
    frames, boxes = scene.render_clip(s)
    part, part_boxes = scene.render_clip(s, [1, 9])
    np.testing.assert_array_equal(part, frames[[1, 9]])
    assert part_boxes == boxes
    without = dataclasses.replace(s, people=[p for i, p in enumerate(s.people) if i != s.main],
                                  main=0)
    empty, _ = scene.render_clip(without)
    for t in (0, 8, 15):
      drawn = np.abs(frames[t].astype(int) - empty[t]).max(-1) > 12
      x0, y0, x1, y1 = (int(round(v)) for v in boxes[s.main][t])
      side = x1 - x0
      assert drawn[y0:y1, x0:x1].mean() > 0.65
      for shift in (-side, side):
        a, b = max(x0 + shift, 0), max(x1 + shift, 0)
        assert b - a < side / 3 or drawn[y0:y1, a:b].mean() < 0.35


def test_left_right_is_the_characters_own():
  """The character's right is the viewer's left (facetrack_jax.events)."""
  def person(key):
    p = next(_scripts(1))[0].people[0]
    return dataclasses.replace(p, events=[script.ScriptEvent(key, "middle", 8, 12, 1.0)],
                               idle=np.zeros_like(p.idle))

  assert script.face_state(person("head_turn_right"), 9).yaw < 0
  assert script.face_state(person("head_turn_left"), 9).yaw > 0
  for side, sign in (("right", 1), ("left", -1)):
    pose = face.Pose(100, 100, 30, script.face_state(person(f"head_tilt_{side}"), 9))
    image_left_eye, image_right_eye = pose.xy([[-0.4, 0.0], [0.4, 0.0]])
    assert sign * (image_left_eye[1] - image_right_eye[1]) > 3   # the character's right ear drops
  pupils_x = {}
  for side in ("left", "right"):   # rendered pupils move to the viewer's opposite side
    p = person(f"gaze_look_{side}")
    attrs = {**p.attributes, "hair_rgb": [200, 170, 100], "glasses": False, "beard": False}
    img = np.full((400, 400, 3), 128, np.uint8)
    face.draw_person(img, attrs, script.face_state(p, 9), 200, 200, 80)
    dark = np.argwhere(img[170:220].max(-1) < 16)   # only the pupils are this black
    assert len(dark) > 10
    pupils_x[side] = dark[:, 1].mean()
  assert pupils_x["right"] < pupils_x["left"] - 10


def test_captions_follow_the_layout_and_narrate_every_event():
  for s, rng in _scripts(300):
    state = rng.bit_generator.state
    caption = captions.write_caption(s, rng)
    rng.bit_generator.state = state
    attrs = s.main_person.attributes
    first = captions.appearance_sentence(attrs, rng)
    assert caption.startswith(first)
    assert attrs["gender"] in first and attrs["age"] in first
    assert ("glasses" in first) == attrs["glasses"] and ("beard" in first) == attrs["beard"]
    if attrs["hair_length"] != "bald":
      assert f"{attrs['hair_length']} {attrs['hair_colour']} hair" in first
    pos = [caption.index(PHASE_PHRASES[p]) for p in PHASES]
    assert pos == sorted(pos) and all(caption.count(PHASE_PHRASES[p]) == 1 for p in PHASES)
    wrong_pronouns = r"\b(she|her)\b" if attrs["gender"] == "man" else r"\b(he|his)\b"
    for k, phase in enumerate(PHASES):
      sentence = caption[pos[k]:pos[k + 1] if k < 3 else None]
      body = sentence[len(PHASE_PHRASES[phase]) + 2:].rstrip(". ")
      events = [e for e in s.main_person.events if e.phase == phase]
      if not events:
        assert "no obvious change" in body
        continue
      clauses = re.split(CONNECTIVES, body)
      assert len(clauses) == len(events), (body, events)
      for clause, e in zip(clauses, events):
        ev = e.event
        assert re.search(ACTION_RE[ev.action], clause), (clause, e)
        if ev.direction:
          assert ev.direction in clause, (clause, e)
        assert not re.search(wrong_pronouns, clause), clause


def test_main_character_is_the_most_prominent():
  larger_distractor_frames = 0
  for s, _ in _scripts(200):
    prom = [people.prominence(p.cx, p.cy, p.r, s.width, s.height) for p in s.people]
    assert int(np.argmax(prom)) == s.main
    main_r = s.main_person.r
    larger_distractor_frames += sum(int(np.sum(p.r > main_r)) for i, p in enumerate(s.people)
                                    if i != s.main)
  assert larger_distractor_frames > 0   # ... but not always the largest face


def _decode(path):
  with av.open(str(path)) as container:
    return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def test_generate_is_deterministic_with_valid_files(tmp_path):
  a = writer.generate(tmp_path / "a", 3, seed=7)
  cli.main(["--out", str(tmp_path / "b"), "--num-clips", "3", "--seed", "7", "--workers", "2"])
  assert a["num_clips"] == 3 and a["clips_per_s"] > 0
  ann = (tmp_path / "a" / "annotations.json").read_bytes()
  assert ann == (tmp_path / "b" / "annotations.json").read_bytes()
  anns = json.loads(ann)
  assert [x["id"] for x in anns] == [f"syn_s7_{i:06d}" for i in range(3)]
  for x in anns:
    assert set(x) == {"id", "video", "caption"} and x["video"] == f"synthetic/{x['id']}.mp4"
    gt_bytes = (tmp_path / "a" / "ground_truth" / f"{x['id']}.json").read_bytes()
    assert gt_bytes == (tmp_path / "b" / "ground_truth" / f"{x['id']}.json").read_bytes()
    frames = _decode(tmp_path / "a" / x["video"])
    assert frames.shape == (16, 240, 320, 3) and frames.std() > 10
    np.testing.assert_array_equal(frames, _decode(tmp_path / "b" / x["video"]))
    gt = json.loads(gt_bytes)
    assert {"id", "video", "num_frames", "fps", "width", "height", "main", "faces", "events",
            "caption"} <= set(gt)
    assert (gt["id"], gt["video"], gt["caption"]) == (x["id"], x["video"], x["caption"])
    assert gt["num_frames"] == 16 and 0 <= gt["main"] < len(gt["faces"]) <= 3
    for i, f in enumerate(gt["faces"]):
      assert len(f["boxes"]) == 16 and {"gender", "age", "hair_colour"} <= set(f["attributes"])
      for b in f["boxes"]:
        assert b is None and i != gt["main"] or (
            0 <= b[0] < b[2] <= 320 and 0 <= b[1] < b[3] <= 240), (i, b)
    assert 2 <= len(gt["events"]) <= 6
    for e in gt["events"]:
      ev = SYNTHETIC_EVENTS[e["key"]]
      assert (e["part"], e["action"], e["direction"]) == (ev.part, ev.action, ev.direction)
      assert e["phase"] in PHASES and 0 <= e["start"] < e["end"] <= 16


def test_takes_of_one_cast_share_people_and_set_not_events():
  """--takes: consecutive clips share the cast (people, background, camera);
  each take scripts its own events and layout; the next cast is new."""
  casts = [writer.cast_of(7, i, takes=3) for i in range(6)]
  assert casts[0] == casts[1] == casts[2] and casts[3] == casts[4] == casts[5]
  assert casts[0] != casts[3]
  clips = [script.sample_clip_script(np.random.default_rng([7, i]), cast=casts[i])
           for i in range(3)]
  for c in clips:
    assert c.main_person.attributes == casts[0].attributes[0]
    assert sorted(map(str, (p.attributes for p in c.people))) == sorted(
        map(str, casts[0].attributes))
    assert c.render_seed == casts[0].render_seed
  assert len({str([(e.key, e.phase) for e in c.main_person.events]) for c in clips}) > 1
  with pytest.raises(ValueError, match="cast has"):
    script.sample_clip_script(np.random.default_rng(0), cast=casts[0],
                              num_people=len(casts[0].attributes) % 3 + 1)


def test_bad_arguments_are_named(tmp_path):
  with pytest.raises(ValueError, match="num_clips"):
    writer.generate(tmp_path, 0, seed=0)
  with pytest.raises(ValueError, match="num_frames"):
    writer.generate(tmp_path, 1, seed=0, num_frames=4)
  with pytest.raises(ValueError, match="width x height"):
    writer.generate(tmp_path, 1, seed=0, width=321)
  with pytest.raises(ValueError, match="takes"):
    writer.generate(tmp_path, 1, seed=0, takes=0)


def test_haar_finds_open_eyed_main_faces_and_misses_closed_ones():
  """Real OpenCV cascade on rendered frames. Natural clips: main-character
  open-eye frames are found, with boxes matching the ground truth. Same clips
  with the main's eyes shut from frame 8 on: clearly fewer detections."""
  clf = cv2.CascadeClassifier(CASCADE)

  def hits(frames, boxes, frame_indices):
    """Per frame: does the cascade find the main face (IoU >= 0.5)? Searched
    around the ground truth (a window of twice its side, detections of
    0.6-1.6x its size) to keep the test fast."""
    out, ious = [], []
    for frame, t in zip(frames, frame_indices):
      x0, y0, x1, y1 = boxes[t]
      side = x1 - x0
      ox, oy = int(max(x0 - side / 2, 0)), int(max(y0 - side / 2, 0))
      grey = cv2.cvtColor(frame[oy:int(y1 + side / 2), ox:int(x1 + side / 2)], cv2.COLOR_RGB2GRAY)
      dets = [[x + ox, y + oy, x + ox + w, y + oy + h] for x, y, w, h in clf.detectMultiScale(
          grey, scaleFactor=1.1, minNeighbors=5, minSize=(int(max(24, 0.6 * side)),) * 2,
          maxSize=(int(1.6 * side),) * 2)]
      best = max([_iou(boxes[t], d) for d in dets], default=0.0)
      out.append(best >= 0.5)
      if best >= 0.3:
        ious.append(best)
    return out, ious

  sampled = sample_indices(16, 8)   # the frames the pipeline keeps
  natural, closed, opened, ious = [], [], [], []
  for s, _ in _scripts(40, seed=0):
    open_t = [t for t in sampled if script.face_state(s.main_person, t).eye_open >= 0.9]
    frames, boxes = scene.render_clip(s, open_t)
    h, i = hits(frames, boxes[s.main], open_t)
    natural += h
    ious += i
    s.people[s.main] = dataclasses.replace(
        s.main_person, events=[script.ScriptEvent("eyes_close", "middle", 8, 16, 1.0)])
    frames, boxes = scene.render_clip(s, sampled)
    h, _ = hits(frames, boxes[s.main], sampled)
    opened += [x for x, t in zip(h, sampled) if t < 8]
    closed += [x for x, t in zip(h, sampled) if t >= 8]
  print(f"Haar hit rate: natural open-eye {np.mean(natural):.2f} ({len(natural)} frames), "
        f"same clips open {np.mean(opened):.2f} vs shut {np.mean(closed):.2f}; "
        f"IoU {np.mean(ious):.2f}")
  assert np.mean(natural) >= 0.8
  assert np.mean(opened) >= 0.8 and np.mean(closed) <= np.mean(opened) - 0.08
  assert np.mean(np.array(ious) >= 0.5) >= 0.9
