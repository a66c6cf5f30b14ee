"""Edited clips cut from real photographs, with exact ground truth: the
real-footage fixture (photos: ``data_prep/realphoto_sources.py``).

A clip is a few shots joined by hard cuts, like a film scene. Each shot
films one photo (or two, side by side: a two-shot) with a virtual camera:
a window on the photo that pans, zooms, shakes and rolls a little; a
"profile-ish" shot also foreshortens the photo about a vertical axis through
the face (a planar stand-in for a turned head), and a third of the shots
are filmed at a tilt of 4-10 degrees. Frame ``t`` is the photo
warped by the camera's homography ``M_t``, so every face box is known
exactly from the photo's face box (``_warp_box``).

Scenes (``SCENES``; A is the main character, B and C other people):
  cutaway     A medium | B close-up | A close-up
  absent      A close-up | B medium | C medium | A medium   (A absent twice)
  two_shot    A medium | A left + B right (a two-shot) | A close-up
  background  A close-up with B small at the side | A medium | B medium
  same_person A photo 1 | B | A photo 2 (another photo of A where there is one)
  profile     A medium turned | B medium | A close-up

A's shots hold >= 60% of the frames and are framed nearer the centre, so the
main character is well defined: the person of the scene, not of one shot.

``generate(out_dir, num_clips, seed)`` writes ``realphoto/<id>.mp4``,
``annotations.json`` and ``ground_truth/<id>.json`` like the synthetic set
(``data_prep.build --annotations ... --video-root out_dir`` scores against
it): ``faces`` (one per identity: ``boxes`` per frame in pixels, or null where
the face is not visible -- under 60% of its box inside the frame), ``main``,
``identities``, ``cuts`` (first frame of each shot after the first) and
``shots``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib

import cv2
import numpy as np
import tqdm

from data_prep import realphoto_sources as sources

SOURCE = "realphoto"
SCENES = ("cutaway", "absent", "two_shot", "background", "same_person", "profile")
FRAMING = {"close": (0.36, 0.46), "medium": (0.2, 0.28), "small": (0.11, 0.15)}
VISIBLE_FRACTION = 0.6


@dataclasses.dataclass
class Pane:
  """One photo filmed into the frame region ``[x0, x1)`` (full height)."""
  photo: str
  x0: int
  x1: int
  face_frac: float          # face side / pane width at the start
  place: float              # the face centre's x in the pane, in [0, 1]
  yaw: float = 0.0          # foreshortening of one side, 0 = none


@dataclasses.dataclass
class Shot:
  panes: list[Pane]
  num_frames: int
  zoom: float               # window width at the end / at the start
  pan: tuple[float, float]  # window centre shift over the shot, in window widths
  shake: float              # per-frame jitter, in window widths
  roll: float               # per-frame roll jitter, degrees
  tilt: float = 0.0         # the camera's roll for the whole shot (a Dutch angle), degrees


def _photos_of(identity: str) -> list[str]:
  return [n for n in sources.CLIP_PHOTOS if sources.PHOTOS[n].identity == identity]


def _main_face(name: str) -> np.ndarray:
  return np.asarray(next(f.box for f in sources.PHOTOS[name].faces if f.identity), np.float64)


def _pane(rng, photo: str, x0: int, x1: int, framing: str, central: bool, yaw=0.0) -> Pane:
  lo, hi = FRAMING[framing]
  place = rng.uniform(0.4, 0.6) if central else rng.uniform(0.3, 0.7)
  return Pane(photo, x0, x1, float(rng.uniform(lo, hi)), float(place), yaw)


def _shot(rng, panes, n) -> Shot:
  return Shot(panes, int(n), zoom=float(rng.choice([1.0, rng.uniform(0.8, 0.92),
                                                    rng.uniform(1.08, 1.25)])),
              pan=tuple(rng.uniform(-0.12, 0.12, 2) * rng.choice([0, 1], p=[0.3, 0.7])),
              shake=float(rng.choice([0.0, 0.006, 0.012])),
              roll=float(rng.choice([0.0, 1.5])),
              tilt=float(rng.choice([0.0, 0.0, rng.choice([-1, 1]) * rng.uniform(4, 10)])))


def sample_scene(rng: np.random.Generator, scene: str, identities: list[str], width: int,
                 num_frames: int) -> list[Shot]:
  """The shots of one clip; ``identities[0]`` is the main character."""
  a, b, c = identities[:3]
  pa, pb, pc = (list(rng.permutation(_photos_of(i))) for i in (a, b, c))
  full = lambda p, framing, central=False, yaw=0.0: [_pane(rng, p, 0, width, framing, central, yaw)]
  if scene == "cutaway":
    plan = [(0.36, full(pa[0], "medium", True)), (0.26, full(pb[0], "close")),
            (0.38, full(pa[-1], "close", True))]
  elif scene == "absent":
    plan = [(0.34, full(pa[0], "close", True)), (0.2, full(pb[0], "medium")),
            (0.18, full(pc[0], "medium")), (0.28, full(pa[-1], "medium", True))]
  elif scene == "two_shot":
    half = width // 2
    plan = [(0.3, full(pa[0], "medium", True)),
            (0.3, [_pane(rng, pa[-1], 0, half, "close", True), _pane(rng, pb[0], half, width,
                                                                    "close", True)]),
            (0.4, full(pa[0], "close", True))]
  elif scene == "background":
    side = int(width * 0.7)
    plan = [(0.38, [_pane(rng, pa[0], 0, side, "close", True),
                    _pane(rng, pb[0], side, width, "small", True)]),
            (0.38, full(pa[-1], "medium", True)), (0.24, full(pb[0], "medium"))]
  elif scene == "same_person":
    plan = [(0.38, full(pa[0], "medium", True)), (0.24, full(pb[0], "medium")),
            (0.38, full(pa[-1], "close", True))]
  elif scene == "profile":
    yaw = float(rng.choice([-1, 1]) * rng.uniform(0.35, 0.5))
    plan = [(0.36, full(pa[0], "medium", True, yaw)), (0.26, full(pb[0], "medium")),
            (0.38, full(pa[-1], "close", True))]
  else:
    raise ValueError(f"unknown scene {scene!r}; scenes: {SCENES}")
  lengths = np.floor(np.array([f for f, _ in plan]) * num_frames).astype(int)
  lengths[-1] = num_frames - lengths[:-1].sum()
  return [_shot(rng, panes, n) for (_, panes), n in zip(plan, lengths)]


# ----------------------------------------------------------------- camera

def _camera(pane: Pane, shot: Shot, t: int, height: int, jitter: np.ndarray,
            photo_hw: tuple[int, int]) -> np.ndarray:
  """float64[3, 3] homography: photo pixels -> frame pixels, frame ``t`` of the
  shot. The window never leaves the photo (a wider framing than the photo
  allows is narrowed), so no border is ever mirrored into a face."""
  face = _main_face(pane.photo)
  ph, pw = photo_hw
  side = face[2] - face[0]
  cx, cy = (face[0] + face[2]) / 2, (face[1] + face[3]) / 2
  pane_w = pane.x1 - pane.x0
  aspect = height / pane_w
  u = t / max(1, shot.num_frames - 1)
  widest = 0.97 * min(pw, ph / aspect) / max(1.0, shot.zoom) / (1 + abs(pane.yaw))
  win_w = min(side / pane.face_frac, widest) * (1 + (shot.zoom - 1) * u)   # photo px shown
  s = pane_w / win_w                                           # frame px per photo px
  # the face at (place, 0.42) of the pane at the start, then the pan
  wx = cx - (pane.place - 0.5) * win_w + shot.pan[0] * win_w * u + jitter[0] * win_w
  wy = cy + (0.5 - 0.42) * win_w * aspect + shot.pan[1] * win_w * u * 0.5 + jitter[1] * win_w
  wx = float(np.clip(wx, win_w / 2, pw - win_w / 2))
  wy = float(np.clip(wy, win_w * aspect / 2, ph - win_w * aspect / 2))
  theta = np.deg2rad(jitter[2])
  c, sn = np.cos(theta) * s, np.sin(theta) * s
  # photo -> (window centre at the pane centre, scaled, rolled)
  affine = np.array([[c, -sn, 0], [sn, c, 0], [0, 0, 1.0]]) @ np.array(
      [[1, 0, -wx], [0, 1, -wy], [0, 0, 1.0]])
  affine = np.array([[1, 0, pane.x0 + pane_w / 2], [0, 1, height / 2], [0, 0, 1.0]]) @ affine
  if pane.yaw:   # foreshortening about the vertical line through the face centre
    fx, fy, _ = affine @ np.array([cx, cy, 1.0])
    k = pane.yaw / (side * s)                    # per frame px
    persp = np.array([[1, 0, 0], [0, 1, 0], [k, 0, 1.0]])
    to = np.array([[1, 0, -fx], [0, 1, -fy], [0, 0, 1.0]])
    back = np.array([[1, 0, fx], [0, 1, fy], [0, 0, 1.0]])
    affine = back @ persp @ to @ affine
  return affine


def _warp_box(m: np.ndarray, box) -> np.ndarray:
  """The face box as it appears after the homography ``m``: centred on the
  warped box, as wide as its warped top and bottom edges and as tall as its
  warped sides on average (a tilted face keeps its size, not the bounding
  box of its tilted square)."""
  x0, y0, x1, y1 = box
  pts = np.array([[x0, y0, 1], [x1, y0, 1], [x0, y1, 1], [x1, y1, 1]], np.float64) @ m.T
  pts = pts[:, :2] / pts[:, 2:]
  w = (np.linalg.norm(pts[1] - pts[0]) + np.linalg.norm(pts[3] - pts[2])) / 2
  h = (np.linalg.norm(pts[2] - pts[0]) + np.linalg.norm(pts[3] - pts[1])) / 2
  c = pts.mean(0)
  return np.array([c[0] - w / 2, c[1] - h / 2, c[0] + w / 2, c[1] + h / 2])


def _visible(box: np.ndarray, x0: int, x1: int, height: int) -> bool:
  area = (box[2] - box[0]) * (box[3] - box[1])
  iw = max(0.0, min(box[2], x1) - max(box[0], x0))
  ih = max(0.0, min(box[3], height) - max(box[1], 0))
  return area > 0 and iw * ih >= VISIBLE_FRACTION * area and min(iw, ih) >= 16


_SHRUNK: dict = {}


def _prefiltered(photos, name: str, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(photo, homography) with the photo shrunk (INTER_AREA, in steps of 2^(1/4))
  to about the camera's scale, so the warp (bilinear) does not alias."""
  scale = float(np.sqrt(abs(np.linalg.det(m[:2, :2]))))
  k = min(0, int(np.floor(4 * np.log2(max(scale, 1e-3)))) + 1) / 4   # <= 0
  if k == 0:
    return photos[name], m
  key = (name, k, id(photos[name]))
  if key not in _SHRUNK:
    if len(_SHRUNK) > 32:
      _SHRUNK.clear()
    _SHRUNK[key] = cv2.resize(photos[name], None, fx=2 ** k, fy=2 ** k,
                              interpolation=cv2.INTER_AREA)
  small = _SHRUNK[key]
  f = np.diag([photos[name].shape[1] / small.shape[1], photos[name].shape[0] / small.shape[0], 1])
  return small, m @ f


def render_clip(shots: list[Shot], width: int, height: int, rng: np.random.Generator,
                photos: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, list], list[int]]:
  """-> (uint8[N, H, W, 3] frames, {identity: [box or None] * N}, cut frames)."""
  n_total = sum(s.num_frames for s in shots)
  frames = np.zeros((n_total, height, width, 3), np.uint8)
  boxes: dict[str, list] = {}
  people = {f.identity for s in shots for p in s.panes for f in sources.PHOTOS[p.photo].faces
            if f.identity}
  for ident in sorted(people):
    boxes[ident] = [None] * n_total
  cuts, t0 = [], 0
  for k, shot in enumerate(shots):
    if k:
      cuts.append(t0)
    for t in range(shot.num_frames):
      jit = rng.normal(0, 1, (len(shot.panes), 3)) * [shot.shake, shot.shake, shot.roll] \
          + [0.0, 0.0, shot.tilt]
      for pane, j in zip(shot.panes, jit):
        m = _camera(pane, shot, t, height, j, photos[pane.photo].shape[:2])
        out = cv2.warpPerspective(*_prefiltered(photos, pane.photo, m), (width, height),
                                  flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        frames[t0 + t, :, pane.x0:pane.x1] = out[:, pane.x0:pane.x1]
        for face in sources.PHOTOS[pane.photo].faces:
          if face.identity is None:
            continue
          b = _warp_box(m, face.box)
          if _visible(b, pane.x0, pane.x1, height):
            boxes[face.identity][t0 + t] = [round(float(v), 2) for v in b]
    t0 += shot.num_frames
  return frames, boxes, cuts


# --------------------------------------------------------------- the set

def clip_id(seed: int, index: int) -> str:
  return f"real_s{seed}_{index:05d}"


def make_clip(out_dir, seed: int, index: int, num_frames: int, width: int, height: int,
              fps: float, photos: dict[str, np.ndarray]) -> dict:
  """Samples, renders and writes clip ``index`` (scene ``index % 6``; the cast
  from ``(seed, index)``); returns its annotation."""
  from data_prep.synthetic.writer import encode_mp4
  rng = np.random.default_rng([seed, index, 0x9E41])
  scene = SCENES[index % len(SCENES)]
  people = sorted({sources.PHOTOS[n].identity for n in sources.CLIP_PHOTOS})
  cast = [str(x) for x in rng.permutation(people)[:3]]
  shots = sample_scene(rng, scene, cast, width, num_frames)
  frames, boxes, cuts = render_clip(shots, width, height, rng, photos)
  cid = clip_id(seed, index)
  video = f"{SOURCE}/{cid}.mp4"
  root = pathlib.Path(out_dir)
  encode_mp4(root / video, frames, fps, repeatable=False)
  idents = sorted(boxes)
  gt = {"id": cid, "video": video, "num_frames": num_frames, "fps": fps, "width": width,
        "height": height, "scene": scene, "identities": idents, "main": idents.index(cast[0]),
        "faces": [{"identity": i, "boxes": boxes[i]} for i in idents], "cuts": cuts,
        "shots": [{"frames": s.num_frames, "zoom": s.zoom, "shake": s.shake, "roll": s.roll,
                   "tilt": s.tilt,
                   "panes": [dataclasses.asdict(p) for p in s.panes]} for s in shots]}
  (root / "ground_truth" / f"{cid}.json").write_text(json.dumps(gt) + "\n")
  caption = f"A {scene.replace('_', ' ')} scene; the main character is {cast[0]}."
  return {"id": cid, "video": video, "caption": caption}


def generate(out_dir: str | os.PathLike, num_clips: int, seed: int = 0, *,
             num_frames: int = 60, width: int = 640, height: int = 360, fps: float = 24.0,
             progress: bool = True) -> list[dict]:
  """Writes ``num_clips`` clips (see the module docstring); returns the
  annotations. Raises FileNotFoundError naming the missing photos."""
  if num_frames < 24 or width % 2 or height % 2 or width < 160:
    raise ValueError(f"need >= 24 frames and even sizes >= 160 wide, got {num_frames} "
                     f"frames of {width}x{height}")
  reason = sources.missing_reason()
  if reason:
    raise FileNotFoundError(reason)
  photos = {n: sources.load(n)[..., :3] for n in sources.CLIP_PHOTOS}
  root = pathlib.Path(out_dir)
  (root / SOURCE).mkdir(parents=True, exist_ok=True)
  (root / "ground_truth").mkdir(parents=True, exist_ok=True)
  anns = [make_clip(root, seed, i, num_frames, width, height, fps, photos)
          for i in tqdm.trange(num_clips, desc="realphoto clips", disable=not progress)]
  (root / "annotations.json").write_text(json.dumps(anns, indent=1) + "\n")
  return anns
