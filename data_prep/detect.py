"""Face detectors: one protocol, a registry by name, OpenCV Haar as default,
and the per-clip schedule that decides where to search.

A detector maps one RGB frame ``uint8[H, W, 3]`` to ``float32[n, 5]`` rows
``(x0, y0, x1, y1, score)`` in pixels of that frame (``n`` may be 0). Add a
detector with ``@register_detector("name")`` on a class (or factory) whose
instances are such callables; ``get_detector("name", **kwargs)`` builds one.
A detector may also offer ``detect_near(frame_rgb, boxes float[k, 4])``: the
faces close to known boxes, at about their size -- much cheaper than a full
search. ``detect_clip`` uses it between keyframes (see there).

Registered: ``haar`` (below; the synthetic default), ``dlib_hog`` (the
real-footage default) and ``dlib_mmod`` (``detect_dlib.py``).

``HaarDetector`` runs an OpenCV frontal-face cascade on one channel of a
downscaled frame. Its score is the number of merged raw windows
(``numDetections``). Knobs: ``cascade``; ``channel`` ("red" or "luma");
``max_side`` (the frame is shrunk so its longer side is at most this; the
smallest face found is ``min_size / max_side`` of the frame); and
``scale_factor`` / ``min_neighbors`` / ``min_size`` of ``detectMultiScale``.
``detect_near`` searches a square of ``roi_scale`` x the box side around
each box, rescaled so the box is ``roi_face_px`` pixels, for faces between
1/``roi_size_range`` and ``roi_size_range`` times that, with a finer scale
step (``roi_scale_factor``), trying ``roi_attempts`` in turn.

Defaults, chosen on synthetic clips (320x240, faces 40-70 px):
``haarcascade_frontalface_alt2`` on the red channel (skin is bright in red
for every skin tone, eyes and brows stay dark: per-frame recall of the main
face 0.99 vs 0.96 on luma; the default cascade on luma: 0.96),
``max_side=240``. The full search takes a coarse scale step,
``scale_factor=1.3`` with ``min_neighbors=1`` (a coarse step leaves fewer
overlapping windows per face); ``detect_near`` refines the boxes on the
frames that follow. On 200 keyframes that costs 3.9 ms per 320x240 frame
(OpenCV's 2 threads) against 6.6 ms for 1.15 / 2, with the same recall
(0.89 of all faces, 0.985 of main faces) and <= 0.01 false positives per
frame; the cost is small faces: 40-50 px faces (in 320x240) are found on
0.50-0.76 of frames instead of 0.56-0.82 (``scale_factor=1.2`` keeps them for
+2 ms per search). The near search takes ``roi_scale=1.3``,
``roi_scale_factor=1.15``, ``roi_min_neighbors=2``. End to end
(``data_prep.pipeline``) against the previous 1.15 / 2 / 1.6 / 1.08 / 3:
main character 99.5% both, mean box IoU 0.86 vs 0.87, per-frame recall 0.98
both (200 clips, seed 3; 120 clips of seed 5: 100% both, 0.86 both), and
detection 14-18 instead of 25-30 ms per clip. On real footage with busy
backgrounds ``min_neighbors=2`` is the safer choice if false tracks show up
on the contact sheets (``python -m data_prep.build ... --detector-arg
min_neighbors=2``; ``parse_key_values`` / ``checked_detector_args`` turn such
strings into checked kwargs).

Faster settings and what they cost (2026-12-04; time per clip of
``detect_clip``, A/B in one process; accuracy on 200 synthetic clips of
seed 3, recall by face size on the first 100): ``min_size=30`` (faces under
1/8 of the frame's longer side are not looked for) saves 1.6 ms of ~12.5 per
clip with the main character, box IoU and main-face recall unchanged, but
all-face recall falls from 0.82 to 0.81 and faces under 40 px (in 320x240)
are found on 0.21 of frames instead of 0.49; ``roi_scale=1.2`` saves 0.9 ms,
and moving faces are lost more often (all-face recall 0.80, IoU 0.861 vs
0.863). Both are left off: on 720p footage ``min_size=30`` would miss faces
under 160 px (the default: under 128 px).

The output is deterministic: OpenCV's threads return a frame's faces in a
varying order, so ``HaarDetector`` sorts its rows. (Before, two runs over the
same 200 clips differed on 16 in the order of detections and on 8 in the
numbering of tracks; the stored crops and boxes were the same.)
"""

from __future__ import annotations

import math
from typing import Callable, Protocol

import cv2
import numpy as np


# ----------------------------------------------------------- box geometry

def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """float[N, >=4], float[M, >=4] (x0, y0, x1, y1, ...) -> IoU float64[N, M]."""
  a, b = np.asarray(a, np.float64)[:, None, :4], np.asarray(b, np.float64)[None, :, :4]
  iw = np.maximum(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0)
  ih = np.maximum(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0)
  inter = iw * ih
  area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
  area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
  return inter / np.maximum(area_a + area_b - inter, 1e-9)


def nms(dets: np.ndarray, iou: float = 0.3, contain: float = 0.7) -> np.ndarray:
  """float[n, 5] -> float[m, 5]: drops boxes overlapping a higher-scoring one
  (IoU > ``iou``, or more than ``contain`` of the smaller box inside the
  other); ties in score keep the larger box. Order of the input is kept."""
  if len(dets) < 2:
    return dets
  d = np.asarray(dets, np.float64)
  area = (d[:, 2] - d[:, 0]) * (d[:, 3] - d[:, 1])
  lo = np.maximum(d[:, None, :2], d[None, :, :2])        # float[n, n, 2] intersection corners
  hi = np.minimum(d[:, None, 2:4], d[None, :, 2:4])
  wh = np.maximum(hi - lo, 0)
  inter = wh[..., 0] * wh[..., 1]
  clash = ((inter / np.maximum(area[:, None] + area[None] - inter, 1e-9) > iou)
           | (inter > contain * np.minimum(area[:, None], area[None])))
  alive = np.ones(len(d), bool)
  keep = []
  for i in np.lexsort((-area, -d[:, 4])):   # score, then size, descending
    if alive[i]:
      keep.append(i)
      alive &= ~clash[i]
  return dets[np.sort(keep)]


# ------------------------------------------------------- protocol, registry

class Detector(Protocol):
  def __call__(self, frame_rgb: np.ndarray) -> np.ndarray:
    """uint8[H, W, 3] RGB -> float32[n, 5] (x0, y0, x1, y1, score), pixels."""


_REGISTRY: dict[str, Callable[..., Detector]] = {}


def register_detector(name: str):
  def deco(factory):
    if name in _REGISTRY:
      raise ValueError(f"detector {name!r} is already registered")
    _REGISTRY[name] = factory
    return factory
  return deco


def available_detectors() -> list[str]:
  return sorted(_REGISTRY)


def get_detector(name: str, **kwargs) -> Detector:
  if name not in _REGISTRY:
    raise ValueError(f"unknown face detector {name!r}; available: {available_detectors()}")
  return _REGISTRY[name](**kwargs)


def parse_key_values(items, flag: str = "--detector-arg") -> dict:
  """["KEY=VALUE", ...] (command-line strings) -> {KEY: VALUE as int, else
  float, else bool ("true"/"false", any case), else str}. ValueError names
  the item that is not KEY=VALUE."""
  out = {}
  for item in items:
    key, sep, val = item.partition("=")
    if not sep or not key:
      raise ValueError(f"{flag} {item!r}: expected KEY=VALUE")
    if val.lower() in ("true", "false"):
      out[key] = val.lower() == "true"
      continue
    for cast in (int, float, str):
      try:
        out[key] = cast(val)
        break
      except ValueError:
        pass
  return out


def checked_detector_args(name: str, args: dict) -> tuple:
  """``args`` as sorted (key, value) pairs (the form ``PrepConfig.detector_kwargs``
  and the build config keep), after building detector ``name`` with them
  once: an unknown argument or a bad value fails here, naming both."""
  if not args:
    return ()
  try:
    get_detector(name, **args)
  except TypeError as e:   # an argument the detector does not take
    raise ValueError(f"detector {name!r} does not take {sorted(args)}: {e}") from e
  except ValueError as e:
    raise ValueError(f"detector {name!r} with {args}: {e}") from e
  return tuple(sorted(args.items()))


def prep_overrides(set_items, detector_items, base: dict | None = None) -> dict:
  """PrepConfig fields from command-line strings (the benchmarks' ``--set
  FIELD=VALUE`` and ``--detector-arg KEY=VALUE``) on top of ``base`` (e.g.
  ``pipeline.REAL_FOOTAGE``); detector arguments are checked against the
  detector they will reach. ValueError names the bad item."""
  out = {**(base or {}), **parse_key_values(set_items, "--set")}
  det_args = parse_key_values(detector_items)
  if det_args:
    out["detector_kwargs"] = checked_detector_args(out.get("detector", "haar"), det_args)
  return out


def near_window(box, frame_hw: tuple[int, int], roi_scale: float, face_px: float) -> tuple:
  """The square a near search looks in: ``roi_scale`` box sides around the
  box centre, clipped to the frame, and the scale that makes the box
  ``face_px`` pixels -> (x0, y0, x1, y1 ints, z float64, rw, rh: the
  window's size after scaling)."""
  bx0, by0, bx1, by1 = box
  h, w = frame_hw
  side = max(bx1 - bx0, by1 - by0, 1.0)
  cx, cy, half = (bx0 + bx1) / 2, (by0 + by1) / 2, roi_scale * side / 2
  x0, y0 = max(0, math.floor(cx - half)), max(0, math.floor(cy - half))
  x1, y1 = min(w, math.ceil(cx + half)), min(h, math.ceil(cy + half))
  z = np.float64(face_px / side)   # maps boxes back in float64
  return x0, y0, x1, y1, z, round((x1 - x0) * z), round((y1 - y0) * z)


# --------------------------------------------------------------------- Haar

@register_detector("haar")
class HaarDetector:
  """OpenCV Haar cascade (``cv2.data.haarcascades``), frontal faces."""

  def __init__(self, cascade: str = "haarcascade_frontalface_alt2.xml", channel: str = "red",
               max_side: int = 240, scale_factor: float = 1.3, min_neighbors: int = 1,
               min_size: int = 24, roi_scale: float = 1.3, roi_face_px: int = 36,
               roi_size_range: float = 1.25, roi_scale_factor: float = 1.15,
               roi_min_neighbors: int = 2,
               roi_attempts: tuple = (("red", 0), ("luma", 0), ("red", 15), ("red", -15))):
    if channel not in ("red", "luma"):
      raise ValueError(f"channel must be 'red' or 'luma', got {channel!r}")
    self.cascade, self.channel, self.max_side = cascade, channel, max_side
    self.scale_factor, self.min_neighbors, self.min_size = scale_factor, min_neighbors, min_size
    self.roi_scale, self.roi_face_px = roi_scale, roi_face_px
    self.roi_size_range, self.roi_scale_factor = roi_size_range, roi_scale_factor
    self.roi_min_neighbors = roi_min_neighbors
    self.roi_attempts = tuple((str(c), float(a)) for c, a in roi_attempts)
    if any(c not in ("red", "luma") for c, _ in self.roi_attempts):
      raise ValueError(f"roi_attempts channels must be 'red' or 'luma': {roi_attempts}")
    self._clf = self._near_clf = None
    self._load()

  def _load(self) -> None:
    if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
      raise RuntimeError("this OpenCV build has no Haar cascades; install "
                         "opencv-python-headless<5")
    path = cv2.data.haarcascades + self.cascade
    # Two instances of the same cascade: one for full frames, one for the small
    # near-search patches. OpenCV rebuilds a classifier's image buffers when
    # the image size changes; alternating sizes on one instance costs ~0.04 ms
    # per near search.
    self._clf, self._near_clf = cv2.CascadeClassifier(path), cv2.CascadeClassifier(path)
    if self._clf.empty() or self._near_clf.empty():
      raise RuntimeError(f"cannot load Haar cascade {path}")

  def __getstate__(self):  # picklable for worker processes: drop the cv2 object
    return {**self.__dict__, "_clf": None, "_near_clf": None}

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._load()

  def __repr__(self):
    return (f"HaarDetector({self.cascade!r}, {self.channel}, max_side={self.max_side}, "
            f"scale_factor={self.scale_factor}, min_neighbors={self.min_neighbors}, "
            f"min_size={self.min_size}, roi_scale={self.roi_scale}, "
            f"roi_face_px={self.roi_face_px}, roi_size_range={self.roi_size_range}, "
            f"roi_scale_factor={self.roi_scale_factor}, "
            f"roi_min_neighbors={self.roi_min_neighbors})")

  def _grey(self, rgb: np.ndarray, channel: str | None = None) -> np.ndarray:
    if (channel or self.channel) == "red":
      return np.ascontiguousarray(rgb[..., 0])
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)

  def _run(self, clf, grey, scale_factor, min_neighbors, min_size, max_size=None) -> np.ndarray:
    """float32[n, 5] in pixels of ``grey``, rows sorted (x0, then y0, ...).

    OpenCV's threads return the faces in a varying order; sorted, the same
    frame always gives the same rows, and so the same tracks downstream."""
    kw = dict(maxSize=(max_size, max_size)) if max_size else {}
    rects, neighbours = clf.detectMultiScale2(
        grey, scaleFactor=scale_factor, minNeighbors=min_neighbors,
        minSize=(min_size, min_size), **kw)
    if len(rects) == 0:
      return np.zeros((0, 5), np.float32)
    r = np.asarray(rects, np.float32).reshape(-1, 4)
    out = np.concatenate([r[:, :2], r[:, :2] + r[:, 2:],
                          np.asarray(neighbours, np.float32).reshape(-1, 1)], 1)
    return out[np.lexsort(out.T[::-1])]

  def __call__(self, frame_rgb: np.ndarray) -> np.ndarray:
    if frame_rgb.ndim != 3 or frame_rgb.shape[2] != 3 or frame_rgb.dtype != np.uint8:
      raise ValueError(f"expected uint8[H, W, 3] RGB, got {frame_rgb.dtype}{list(frame_rgb.shape)}")
    h, w = frame_rgb.shape[:2]
    grey = self._grey(frame_rgb)
    if max(h, w) > self.max_side:
      s = self.max_side / max(h, w)
      grey = cv2.resize(grey, (max(1, round(w * s)), max(1, round(h * s))),
                        interpolation=cv2.INTER_AREA)
    out = self._run(self._clf, grey, self.scale_factor, self.min_neighbors, self.min_size)
    out[:, [0, 2]] *= w / grey.shape[1]
    out[:, [1, 3]] *= h / grey.shape[0]
    return out

  def detect_near(self, frame_rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Faces within ``roi_scale`` box sides of each box and of similar size.

    Each neighbourhood is tried as listed in ``roi_attempts`` -- (channel,
    in-plane rotation in degrees) -- until one finds a face: a face the
    detector lost for a moment (a tilted head, a low-contrast expression)
    is often found again by the second or third try."""
    lo = max(self.min_size, int(self.roi_face_px / self.roi_size_range))
    hi = int(np.ceil(self.roi_face_px * self.roi_size_range))
    found = []
    for box in np.asarray(boxes, np.float64).reshape(-1, 4).tolist():
      x0, y0, x1, y1, z, rw, rh = near_window(box, frame_rgb.shape[:2], self.roi_scale,
                                              self.roi_face_px)
      if min(rw, rh) < lo:
        continue
      window, greys = frame_rgb[y0:y1, x0:x1], {}
      for channel, angle in self.roi_attempts:
        if channel not in greys:   # one channel, shrunk only when an attempt needs it
          greys[channel] = cv2.resize(self._grey(window, channel), (rw, rh),
                                      interpolation=cv2.INTER_AREA if z < 1 else cv2.INTER_LINEAR)
        grey = greys[channel]
        if angle:
          rot = cv2.getRotationMatrix2D((rw / 2, rh / 2), angle, 1.0)
          grey = cv2.warpAffine(grey, rot, (rw, rh), borderMode=cv2.BORDER_REPLICATE)
        d = self._run(self._near_clf, grey, self.roi_scale_factor, self.roi_min_neighbors, lo, hi)
        if len(d):
          if angle:   # the box centre back to the unrotated patch; the size is kept
            back = cv2.invertAffineTransform(rot)
            c = np.stack([(d[:, 0] + d[:, 2]) / 2, (d[:, 1] + d[:, 3]) / 2, np.ones(len(d))], 1)
            c = c @ back.T
            half_wh = (d[:, 2:4] - d[:, 0:2]) / 2
            d[:, 0:2], d[:, 2:4] = c - half_wh, c + half_wh
          d[:, [0, 2]] = d[:, [0, 2]] / z + x0
          d[:, [1, 3]] = d[:, [1, 3]] / z + y0
          found.append(d)
          break
    return np.concatenate(found).astype(np.float32) if found else np.zeros((0, 5), np.float32)


# ----------------------------------------------------------------- schedule

def detect_clip(detector: Detector, frames, det_frames: np.ndarray,
                cuts: np.ndarray, keyframe_every: int = 4, memory: int = 3,
                refind_iou: float = 0.5, errors: list | None = None
                ) -> tuple[list[np.ndarray], np.ndarray]:
  """Faces on each of ``det_frames`` (sorted frame numbers; ``frames[f]`` is
  frame ``f``: an array of every frame, or a dict of just these).

  Full-frame search on keyframes: the first detection frame after each
  scene cut, any frame with nothing to follow, and the ``keyframe_every``-th
  after the last keyframe (so a face that walks in waits at most that many
  detection frames; counting from the last cut rather than from frame 0
  saves ~0.5 full searches a clip on the real-photo clips). Elsewhere, when the detector has ``detect_near``, only near the
  faces found in the last ``memory`` detection frames (a face the detector
  misses for a moment is still looked for). Keyframes also search near those
  of the faces that the full search did not find again (no box with IoU >=
  ``refind_iou``), so a face the full search misses is kept. Returns (one
  NMS'd ``float32[n, 5]`` per detection frame, ``bool[M]`` keyframe flags).
  ``errors``: when given, a detector that raises on a frame costs only that
  frame (no faces there) and ``(frame, "ExcType: message")`` is appended;
  otherwise the exception propagates.
  """
  near = getattr(detector, "detect_near", None)
  out, keys, recent, last_key = [], np.zeros(len(det_frames), bool), [], -keyframe_every
  for s, f in enumerate(det_frames):
    cut = s > 0 and np.any((cuts > det_frames[s - 1]) & (cuts <= f))
    if cut:
      recent = []
    seeds = nms(np.concatenate(recent)) if recent else np.zeros((0, 5), np.float32)
    keys[s] = near is None or cut or s - last_key >= keyframe_every or len(seeds) == 0
    last_key = s if keys[s] else last_key
    try:
      found = [detector(frames[f])] if keys[s] else []
      if found and len(found[0]) and len(seeds):   # near only the faces the full search missed
        seeds = seeds[box_iou(seeds, found[0]).max(1) < refind_iou]
      if near is not None and len(seeds):
        found.append(near(frames[f], seeds[:, :4]))
    except Exception as e:  # pylint: disable=broad-except
      if errors is None:
        raise
      errors.append((int(f), f"{type(e).__name__}: {e}"))
      found = []
    d = nms(np.concatenate(found).astype(np.float32)) if found else np.zeros((0, 5), np.float32)
    out.append(d)
    # seeds: newest first wins NMS (score column = recency)
    recent = [np.concatenate([d[:, :4], np.full((len(d), 1), s, np.float32)], 1)] + recent
    recent = recent[:memory]
  return out, keys


# dlib_hog and dlib_mmod register themselves (dlib is imported when one is built)
from data_prep import detect_dlib  # noqa: E402,F401  pylint: disable=wrong-import-position
