"""The event script of a synthetic clip: who is there, what each face does
when (pure numpy; nothing is drawn here).

Timing. ``num_frames`` split into the four ``PHASES`` of equal length; an
event belongs to the phase of its onset frame ``start``; ``end`` is
exclusive. Visibility is designed for the pipeline's sampler
(``data_prep.video.sample_indices``, T = num_frames / 2: frames 1, 3, ..., 15
of 16): a phase's first event starts in its first half, a "then" event 2
frames after the previous one and still in the phase, so every onset shows
in a sampled frame of its own phase. Held states (brows, wide eyes, gaze,
smile, head pose, ...) last >= 3 frames; a blink shuts the eyes 3-5 frames
so that >= 2 sampled frames are shut and a later sampled frame is open (so
no blinks in the last phase at 16 frames); "close eyes" comes only in the
second half and holds to the end; "open mouth" holds until a scripted "close
mouth" or the end; "talk" cycles the mouth with period 3 (no stride-2
sampler aliases it away); a nod lowers the head over 3-4 frames. After a
held state ends the face relaxes (one frame at 35%, not narrated).

Left/right convention (``facetrack_jax.events``): "left"/"right" are the
CHARACTER's own. The character faces the camera, so their right is the
VIEWER's left: "turns his head to the right" moves the nose to the image's
left (``yaw < 0``), "looks to the right" moves the pupils to the image's left
(``gaze_x < 0``), "tilts her head to the right" brings the head's top to
the image's left and her right ear (image left) down (``roll > 0``).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from data_prep.synthetic import people as people_lib
from data_prep.video import sample_indices
from facetrack_jax.events import PHASES, SYNTHETIC_EVENTS, Event

# Resources an event occupies while active; events sharing one cannot overlap.
_RESOURCES = {
    "brows": ("brows",), "eyes_blink": ("lids", "gaze"), "eyes_close": ("lids", "gaze"),
    "eyes_widen": ("lids",), "gaze": ("gaze",), "mouth": ("mouth",), "lips": ("mouth",),
    "head": ("head",),
}
_NO_RELEASE = ("eyes_blink", "mouth_talk", "head_nod", "mouth_open")
_WEIGHTS = {"eyes_blink": 1.6, "mouth_talk": 1.3, "mouth_smile": 1.2, "mouth_close": 3.0}


@dataclasses.dataclass
class FaceState:
  """What a face shows in one frame, in IMAGE terms (see face.py)."""
  brow_raise: float = 0.0   # +1 raised, -1 lowered
  brow_furrow: float = 0.0  # 0..1 inner ends down and together
  eye_open: float = 1.0     # 0 closed, 1 normal, 1.5 wide
  gaze_x: float = 0.0       # -1..1, + = pupils to the viewer's right
  gaze_y: float = 0.0       # -1..1, + = down
  mouth_open: float = 0.0   # 0..1
  smile: float = 0.0        # +1 smile, -1 frown
  lip_press: float = 0.0    # 0..1
  yaw: float = 0.0          # -1..1, + = nose to the viewer's right
  roll: float = 0.0         # degrees, + = top of the head to the viewer's left
  pitch: float = 0.0        # 0..1 head lowered (nod)


@dataclasses.dataclass(frozen=True)
class ScriptEvent:
  key: str            # a SYNTHETIC_EVENTS key
  phase: str          # one of PHASES (the phase of ``start``)
  start: int          # first frame
  end: int            # one past the last frame
  intensity: float    # 0.55..1

  @property
  def event(self) -> Event:
    return dataclasses.replace(SYNTHETIC_EVENTS[self.key], phase=self.phase)


@dataclasses.dataclass
class PersonScript:
  attributes: dict
  events: list[ScriptEvent]      # narrative order: by onset
  cx: np.ndarray                 # float[T] head centre x (pixels, before camera motion)
  cy: np.ndarray                 # float[T]
  r: np.ndarray                  # float[T] head half-width (pixels)
  idle: np.ndarray               # float[T, 2] slow small yaw / roll (deg) sway


@dataclasses.dataclass
class ClipScript:
  num_frames: int
  width: int
  height: int
  fps: float
  people: list[PersonScript]
  main: int                      # index into people of the main character
  render_seed: int               # background, camera and noise

  @property
  def main_person(self) -> PersonScript:
    return self.people[self.main]


def phase_bounds(num_frames: int) -> list[tuple[int, int]]:
  """[start, end) frames of each phase."""
  b = [round(i * num_frames / len(PHASES)) for i in range(len(PHASES) + 1)]
  return list(zip(b[:-1], b[1:]))


def _resources(key: str) -> tuple[str, ...]:
  return _RESOURCES.get(key) or _RESOURCES[SYNTHETIC_EVENTS[key].part]


def _phase_counts(rng, n_events):
  """Events per phase: some phases may stay empty ("no obvious change")."""
  n_empty = int(rng.choice(3, p=(0.55, 0.33, 0.12)))
  n_busy = int(np.clip(4 - n_empty, -(-n_events // 3), min(n_events, 4)))  # <= 3 per phase
  busy = sorted(rng.choice(4, n_busy, replace=False))
  counts = [0] * 4
  for p in busy:
    counts[p] = 1
  for _ in range(n_events - len(busy)):
    choices = [p for p in busy if counts[p] < 3]
    counts[int(rng.choice(choices))] += 1
  return counts


def _blink_end(start: int, num_frames: int) -> int | None:
  """The shortest blink (3-5 frames shut) from ``start`` that shows >= 2 shut
  frames AND an open frame after it among the T = num_frames // 2 frames the
  pipeline samples (``data_prep.video.sample_indices``); None if none fits."""
  sampled = sample_indices(num_frames, num_frames // 2)
  for end in range(start + 3, min(start + 5, num_frames - 1) + 1):
    if np.sum((sampled >= start) & (sampled < end)) >= 2 and np.any(sampled >= end):
      return end
  return None


def _sample_timeline(rng, num_frames, n_events, forbid=None) -> list[ScriptEvent]:
  """Events of one face, in onset order, ``forbid[phase]`` keys excluded."""
  bounds = phase_bounds(num_frames)
  hold = max(3, num_frames // 5)
  free_at = {}        # resource -> first frame it is free
  events: list[ScriptEvent] = []
  open_mouth = None   # index of an "open mouth" event that holds until closed
  for p, count in enumerate(_phase_counts(rng, n_events)):
    if not count:
      continue
    lo, hi = bounds[p]
    first = lo + int(rng.integers(0, max(1, (hi - lo) // 2)))
    onsets = [first]
    for _ in range(count - 1):   # "and" (same onset) or "then" (2+ frames later)
      later = onsets[-1] + 2
      same = later > lo + (hi - lo) // 2 + 1 or later + 3 > num_frames or rng.random() < 0.5
      onsets.append(onsets[-1] if same else later)
    used = set()
    for t in onsets:
      cands, weights = [], []
      for key in SYNTHETIC_EVENTS:
        if key in used or (forbid and key in forbid.get(PHASES[p], ())):
          continue
        if key == "mouth_close":
          ok = open_mouth is not None and events[open_mouth].start <= t - 3
        else:
          ok = all(free_at.get(r, 0) <= t for r in _resources(key))
        if ok and key == "eyes_blink":
          ok = _blink_end(t, num_frames) is not None
        if ok and key == "eyes_close":   # keeps >= half the clip open-eyed
          ok = p >= 2
        if ok:
          cands.append(key)
          weights.append(_WEIGHTS.get(key, 1.0))
      if not cands:
        continue
      key = cands[int(rng.choice(len(cands), p=np.asarray(weights) / sum(weights)))]
      used.add(key)
      if key == "mouth_close":   # ends the open mouth; marks the onset only
        old = events[open_mouth]
        events[open_mouth] = dataclasses.replace(old, end=t)
        open_mouth, end = None, t + 1
        free_at["mouth"] = t
      else:
        if key == "eyes_blink":
          end = _blink_end(t, num_frames)
        elif key in ("eyes_close", "mouth_open"):
          end = num_frames
        elif key == "head_nod":
          end = min(t + int(rng.integers(3, 5)), num_frames)
        elif key == "mouth_talk":
          end = min(t + int(rng.integers(4, 9)), num_frames)
        else:
          end = num_frames if p >= 2 and rng.random() < 0.3 else min(
              t + int(rng.integers(hold, 2 * hold + 1)), num_frames)
        for r in _resources(key):
          free_at[r] = end + 1 if end < num_frames else num_frames + 1
        if key == "mouth_open":
          open_mouth = len(events)
      events.append(ScriptEvent(key, PHASES[p], t, end, round(float(rng.uniform(0.55, 1.0)), 2)))
  return sorted(events, key=lambda e: e.start)


@dataclasses.dataclass(frozen=True)
class Cast:
  """Who is in a scene and where it is shot, shared by every take of it:
  ``attributes[0]`` is the main character's, the rest the distractors';
  ``render_seed`` fixes background, camera motion and noise."""
  attributes: tuple[dict, ...]
  render_seed: int


def sample_cast(rng: np.random.Generator, num_people: int | None = None) -> Cast:
  """1-3 people (or ``num_people``) and a set."""
  if num_people is not None and not 1 <= num_people <= 3:
    raise ValueError(f"num_people={num_people}: must be 1, 2 or 3")
  n = num_people or int(rng.choice((1, 2, 3), p=(0.25, 0.4, 0.35)))
  attrs = tuple(people_lib.sample_attributes(rng) for _ in range(n))
  return Cast(attrs, int(rng.integers(0, 2 ** 31 - 1)))


def sample_clip_script(rng: np.random.Generator, num_frames: int = 16, width: int = 320,
                       height: int = 240, fps: float = 8.0, *, num_people: int | None = None,
                       min_events: int = 2, max_events: int = 6,
                       cast: Cast | None = None) -> ClipScript:
  """A random clip: 1-3 people, the main one doing 2-6 events over 4 phases,
  distractors doing other things (never the main's event in the same phase).

  ``cast`` (default: one drawn from ``rng``) fixes the people and the set, so
  several takes of one scene differ only in layout and in what each face
  does -- as real data sets film each actor many times (RAVDESS, ...): who
  is on screen then says nothing about what they do.
  """
  if num_frames < 8:
    raise ValueError(f"num_frames={num_frames}: need >= 8 (2 per phase)")
  if not 1 <= min_events <= max_events <= 8:
    raise ValueError(f"min_events={min_events}, max_events={max_events}: need "
                     "1 <= min_events <= max_events <= 8")
  if cast is None:
    cast = sample_cast(rng, num_people)
  elif num_people is not None and num_people != len(cast.attributes):
    raise ValueError(f"num_people={num_people} but the cast has {len(cast.attributes)}")
  n_people = len(cast.attributes)
  tracks = people_lib.sample_layout(rng, n_people, num_frames, width, height)
  main_events: list[ScriptEvent] = []
  while len(main_events) < min_events:
    main_events = _sample_timeline(rng, num_frames, int(rng.integers(min_events, max_events + 1)))
  forbid: dict[str, set] = {}
  for e in main_events:
    forbid.setdefault(e.phase, set()).add(e.key)
  persons = []
  for i, (cx, cy, r) in enumerate(tracks):
    events = main_events if i == 0 else _sample_timeline(
        rng, num_frames, int(rng.integers(1, 5)), forbid)
    idle = np.clip(rng.normal(0, 1, (num_frames, 2)).cumsum(0) * [0.02, 0.6], [-0.08, -3.0],
                   [0.08, 3.0])   # slow head sway: yaw, roll (deg)
    persons.append(PersonScript(cast.attributes[i], events, cx, cy, r, idle))
  order = rng.permutation(n_people)   # the main character is not always first
  persons = [persons[j] for j in order]
  return ClipScript(num_frames, width, height, fps, persons, int(np.argmin(order)),
                    cast.render_seed)


def true_events(script: ClipScript) -> list[Event]:
  """The main character's events, in narrative order, with their phase."""
  return [e.event for e in script.main_person.events]


def _talk(t: int, start: int, intensity: float) -> float:
  return (0.12, 0.75, 0.4)[(t - start) % 3] * (0.6 + 0.4 * intensity)


def face_state(person: PersonScript, t: int) -> FaceState:
  """The face of ``person`` at frame ``t``; later events override earlier ones."""
  s = FaceState(yaw=float(person.idle[t, 0]), roll=float(person.idle[t, 1]))
  for e in person.events:
    if e.key == "mouth_close":
      continue
    if e.start <= t < e.end:
      a = e.intensity
    elif t == e.end and e.key not in _NO_RELEASE:
      a = 0.35 * e.intensity   # one frame of release after a held state
    else:
      continue
    _apply(s, e.key, a, t, e)
  return s


def _apply(s: FaceState, key: str, a: float, t: int, e: ScriptEvent) -> None:
  if key == "brows_raise":
    s.brow_raise = a
  elif key == "brows_lower":
    s.brow_raise = -0.9 * a
  elif key == "brows_furrow":
    s.brow_furrow, s.brow_raise = a, -0.3 * a
  elif key in ("eyes_blink", "eyes_close"):
    s.eye_open = 0.0 if a > 0.5 else 0.4
  elif key == "eyes_widen":
    s.eye_open = 1.0 + 0.55 * a
  elif key.startswith("gaze_look_"):
    d = key.rsplit("_", 1)[1]   # character's left = viewer's right
    s.gaze_x = {"left": a, "right": -a}.get(d, s.gaze_x)
    s.gaze_y = {"up": -a, "down": a}.get(d, s.gaze_y)
    if d == "up":     # the upper lids follow the gaze (never undoing "widen")
      s.eye_open = max(s.eye_open, 1.0 + 0.25 * a)
    elif d == "down" and s.eye_open <= 1.0:
      s.eye_open = 0.65
  elif key == "mouth_open":
    s.mouth_open = 0.45 + 0.55 * a
  elif key == "mouth_smile":
    s.smile = a
  elif key == "mouth_frown":
    s.smile = -a
  elif key == "lips_press":
    s.lip_press = a
  elif key == "mouth_talk":
    s.mouth_open = _talk(t, e.start, a)
  elif key.startswith("head_turn_"):
    s.yaw = (0.85 if key.endswith("left") else -0.85) * a
  elif key.startswith("head_tilt_"):
    s.roll = (-16.0 if key.endswith("left") else 16.0) * a
  elif key == "head_nod":
    s.pitch = (0.6, 1.0, 1.0, 0.6)[min(t - e.start, 3)] * a
