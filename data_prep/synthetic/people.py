"""Who is in a synthetic clip: appearance attributes and where each head is
(pure numpy, no drawing).

Attributes are a JSON-friendly dict: the words the caption uses (gender,
age, skin, hair_colour, hair_length, glasses, beard) and the colours the
renderer draws (``*_rgb``). Layout: per-frame head centre ``cx, cy`` and head
half-width ``r`` in pixels (before camera motion).

Main-character rule (by construction, checked by :func:`prominence`): the
main character is on screen the whole clip, near the centre, and has the
largest prominence = sum over frames of (visible face area x centrality).
Distractors are off-centre, usually smaller, and some walk in or out of the
frame; one that walks past may be larger than the main face for a while.
"""

from __future__ import annotations

import numpy as np

SKIN = {"fair": (238, 204, 180), "light": (226, 182, 146), "tanned": (198, 148, 106),
        "brown": (156, 106, 74), "dark": (112, 76, 56)}
HAIR = {"black": (30, 26, 26), "dark brown": (66, 44, 32), "brown": (112, 76, 46),
        "blonde": (218, 184, 112), "red": (168, 74, 40), "grey": (152, 152, 150),
        "white": (226, 226, 220)}
EYES = ((72, 46, 30), (42, 32, 26), (64, 104, 146), (74, 112, 74))
GLASSES = ((24, 24, 28), (92, 56, 32), (150, 150, 160))
AGES = ("young", "middle-aged", "elderly")
BOX_CENTER_V = 0.14   # face box centre below the head centre, in head half-widths r
BOX_HALF = 1.22       # face box half side, in r (matches the Haar cascade's boxes)


def _pick(rng: np.random.Generator, options, p=None):
  return options[int(rng.choice(len(options), p=p))]


def sample_attributes(rng: np.random.Generator) -> dict:
  """One person's appearance: words for the caption, colours for drawing."""
  gender = _pick(rng, ("man", "woman"))
  age = _pick(rng, AGES, p=(0.5, 0.32, 0.18))
  if age == "elderly":
    hair_colour = _pick(rng, ("grey", "white", "grey", "dark brown"))
  elif age == "middle-aged":
    hair_colour = _pick(rng, ("black", "dark brown", "brown", "blonde", "red", "grey"),
                        p=(0.25, 0.22, 0.18, 0.14, 0.06, 0.15))
  else:
    hair_colour = _pick(rng, ("black", "dark brown", "brown", "blonde", "red"),
                        p=(0.3, 0.22, 0.2, 0.2, 0.08))
  if gender == "woman":
    hair_length = _pick(rng, ("long", "short"), p=(0.72, 0.28))
  elif age == "young":
    hair_length = _pick(rng, ("short", "long"), p=(0.92, 0.08))
  else:
    hair_length = _pick(rng, ("short", "bald"), p=(0.75, 0.25))
  skin = _pick(rng, tuple(SKIN))
  skin_rgb = np.asarray(SKIN[skin]) + rng.integers(-8, 9, 3)
  hair_rgb = np.asarray(HAIR[hair_colour]) + rng.integers(-8, 9, 3)
  lip = _plain_lip(skin_rgb)
  if gender == "woman" and rng.random() < 0.4:
    lip = np.array([176, 48, 62]) + rng.integers(-16, 17, 3)
  shirt = rng.integers(30, 226, 3)
  return {
      "gender": gender, "age": age, "skin": skin, "hair_colour": hair_colour,
      "hair_length": hair_length, "glasses": bool(rng.random() < 0.25),
      "beard": bool(gender == "man" and rng.random() < 0.35),
      "hair_style": int(rng.integers(0, 3)),
      "skin_rgb": _rgb(skin_rgb), "hair_rgb": _rgb(hair_rgb), "lip_rgb": _rgb(lip),
      "eye_rgb": _rgb(_pick(rng, EYES)), "shirt_rgb": _rgb(shirt),
      "glasses_rgb": _rgb(_pick(rng, GLASSES)),
  }


def _plain_lip(skin_rgb: np.ndarray) -> np.ndarray:
  """float[3]: the lip colour of a face without lipstick, from its skin's."""
  return skin_rgb * [0.86, 0.58, 0.58] + [18, 0, 0]


def plain_lip_rgb(skin_rgb) -> list[int]:
  """The ``lip_rgb`` a person without lipstick gets for ``skin_rgb`` (so a
  reader of the attributes can tell lipstick apart)."""
  return _rgb(_plain_lip(np.asarray(skin_rgb, np.float64)))


def _rgb(x) -> list[int]:
  return [int(v) for v in np.clip(np.round(x), 0, 255)]


def face_extent(cx, cy, r):
  """float[T, 4] face box (x0, y0, x1, y1) of a frontal, untilted head; the
  same square as ``face.face_box``."""
  cx, cy, r = (np.asarray(a, np.float64) for a in (cx, cy, r))
  c, h = cy + BOX_CENTER_V * r, BOX_HALF * r
  return np.stack([cx - h, c - h, cx + h, c + h], -1)


def visible_fraction(cx, cy, r, width: int, height: int) -> np.ndarray:
  """float[T]: the fraction of each frame's face box inside the image."""
  box = face_extent(cx, cy, r)
  vis_w = np.clip(np.minimum(box[:, 2], width) - np.maximum(box[:, 0], 0), 0, None)
  vis_h = np.clip(np.minimum(box[:, 3], height) - np.maximum(box[:, 1], 0), 0, None)
  return vis_w * vis_h / ((box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1]))


def prominence(cx, cy, r, width: int, height: int) -> float:
  """Sum over frames of visible face area x centrality (1 at the centre, 0.3
  in a corner): the main-character criterion."""
  area = visible_fraction(cx, cy, r, width, height) * (2 * BOX_HALF * np.asarray(r)) ** 2
  d = np.hypot(np.asarray(cx) / (width / 2) - 1, np.asarray(cy) / (height / 2) - 1)
  centrality = 1.0 - 0.7 * np.clip(d / np.sqrt(2), 0, 1)
  return float(np.sum(area * centrality))


def _track(rng, num_frames, x0, y0, r0, vx, vy, growth):
  t = np.arange(num_frames, dtype=np.float64)
  wobble = rng.normal(0, 0.35, (2, num_frames)).cumsum(1) * 0.5
  cx = x0 + vx * t + wobble[0]
  cy = y0 + vy * t + wobble[1]
  r = r0 * (1 + growth * t / max(num_frames - 1, 1))
  return cx, cy, r


def sample_layout(rng: np.random.Generator, num_people: int, num_frames: int, width: int,
                  height: int, *, max_tries: int = 200) -> list[tuple[np.ndarray, ...]]:
  """Per person (cx, cy, r) float[T] each; person 0 is the main character.

  Sizes are for a 320x240 frame and scale with width: the main head is
  48-68 px wide (face box 59-83 px, big enough for a Haar cascade), i.e.
  10-14 px after downscaling the frame to 64x64. The main face stays >= 10 px
  (the camera's maximum shift) inside the frame.
  """
  k = width / 320.0
  for _ in range(max_tries):
    r_main = rng.uniform(24, 34) * k
    main = _track(rng, num_frames, width * rng.uniform(0.38, 0.62),
                  height * rng.uniform(0.36, 0.5), r_main, rng.uniform(-0.6, 0.6) * k,
                  rng.uniform(-0.3, 0.3) * k, rng.uniform(-0.1, 0.1))
    tracks = [main]
    for _ in range(num_people - 1):
      side = rng.choice((-1.0, 1.0))
      walking = rng.random() < 0.4
      if walking:   # walks in from the side edge, or out of the frame
        r_d = r_main * rng.uniform(0.65, 1.2)
        speed = rng.uniform(3.5, 7.0) * k
        if rng.random() < 0.5:   # entering: starts just outside, moves inward
          x0, vx = width / 2 + side * (width / 2 + rng.uniform(0.2, 1.0) * r_d), -side * speed
        else:                    # leaving: starts inside, moves outward
          x0, vx = width / 2 + side * width * rng.uniform(0.28, 0.36), side * speed
        track = _track(rng, num_frames, x0, height * rng.uniform(0.3, 0.55), r_d, vx,
                       rng.uniform(-0.3, 0.3) * k, rng.uniform(-0.05, 0.05))
      else:
        r_d = r_main * rng.uniform(0.6, 1.0)
        track = _track(rng, num_frames, width / 2 + side * width * rng.uniform(0.3, 0.38),
                       height * rng.uniform(0.3, 0.55), r_d, rng.uniform(-0.5, 0.5) * k,
                       rng.uniform(-0.3, 0.3) * k, rng.uniform(-0.12, 0.12))
      tracks.append(track)
    if _valid(tracks, width, height):
      return tracks
  raise RuntimeError(f"could not place {num_people} people in {width}x{height} "
                     f"after {max_tries} tries")


def _valid(tracks, width, height) -> bool:
  cx, cy, r = tracks[0]
  box = face_extent(cx, cy, r)
  if box[:, 0].min() < 10 or box[:, 2].max() > width - 10 or box[:, 1].min() < 10 or (
      box[:, 3].max() > height - 10):
    return False   # the main face stays fully on screen, camera shake included
  p_main = prominence(cx, cy, r, width, height)
  for i, (dx, dy, dr) in enumerate(tracks[1:]):
    if prominence(dx, dy, dr, width, height) * 1.3 > p_main:
      return False
    if np.sum(visible_fraction(dx, dy, dr, width, height) >= 0.5) < 4:
      return False   # every distractor is clearly on screen for a few frames
    if np.any((np.abs(dx - cx) < 1.15 * (r + dr)) & (np.abs(dy - cy) < 1.4 * (r + dr))):
      return False   # faces would overlap
    for ex, ey, er in tracks[1:i + 1]:
      if np.any((np.abs(dx - ex) < 1.1 * (dr + er)) & (np.abs(dy - ey) < 1.4 * (dr + er))):
        return False
  return True
