"""dlib face detectors for ``detect.py``'s registry: ``dlib_hog`` and ``dlib_mmod``.

``dlib_hog``: dlib's frontal HOG + linear SVM detector (``dlib-bin`` wheel,
no model file). It scans an 80x80 window over a pyramid that shrinks by 5/6
a level, so on a frame shrunk to ``max_side`` it finds faces from
``80 / max_side`` of the longer side up (``upsample=1`` doubles the frame
first: faces from 40 px, ~4x the time). ``max_side`` is 400: the full
search finds faces from a fifth of the longer side (256 px in 1280x720:
close-ups and medium close-ups, what FEC-Bench's clips hold) for ~8 ms a
640x360 frame against ~19 ms at 640 (faces from an eighth), at the same
accuracy on the real-photo clips (README); smaller faces need
``max_side=640`` or ``upsample=1``. ``detect_near`` runs the same detector
on a square around each known box (``roi_scale`` box sides), rescaled so
the face is ``roi_face_px`` pixels: ~2 ms instead of a full search. Score: the SVM margin (``threshold`` drops weaker rows).

``dlib_mmod``: dlib's CNN (max-margin object detection) face detector,
weights ``mmod_human_face_detector.dat`` from the ``face-recognition-models``
package (dlib's own serialisation). It finds turned, dark and small faces
that HOG misses, but dlib-bin has no CUDA and no BLAS: ~1-2 s per 640x360
frame on one CPU core, so it runs on keyframes only: its ``detect_near``
uses the HOG detector on the patch (``near="hog"``, ~3 ms; ``near="mmod"``
runs the CNN there too: ~0.3 s a patch with the face at 80-100 px, and
nothing found with the face at 60 px). A CUDA-built dlib would make it
usable on every frame; dlib-bin is CPU only.

Both take RGB ``uint8[H, W, 3]`` and return ``float32[n, 5]`` rows
``(x0, y0, x1, y1, score)`` in pixels of the given frame, sorted by ``x0``.
"""

from __future__ import annotations

import importlib.util
import pathlib

import cv2
import numpy as np

from data_prep.detect import near_window, register_detector


def model_path(name: str) -> pathlib.Path:
  """A model file of the ``face-recognition-models`` package, found without
  importing it (its ``__init__`` needs ``pkg_resources``, gone from new
  setuptools). Raises FileNotFoundError naming the package to install."""
  spec = importlib.util.find_spec("face_recognition_models")
  for loc in (spec.submodule_search_locations or []) if spec else []:
    p = pathlib.Path(loc) / "models" / name
    if p.is_file():
      return p
  raise FileNotFoundError(f"dlib model {name} not found: pip install face-recognition-models "
                          "(requirements.txt)")


def import_dlib():
  try:
    import dlib  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise RuntimeError("the dlib detectors need dlib: pip install dlib-bin "
                       "(requirements.txt)") from e
  return dlib


def _check_rgb(frame: np.ndarray) -> None:
  if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
    raise ValueError(f"expected uint8[H, W, 3] RGB, got {frame.dtype}{list(frame.shape)}")


class _DlibDetector:
  """Shared frame handling: shrink to ``max_side``, run ``_run`` (rows in
  pixels of the shrunk image), map back; ``detect_near`` on patches."""

  max_side: int
  roi_scale: float
  roi_face_px: int

  def _load(self) -> None:
    raise NotImplementedError

  def _run(self, img: np.ndarray, near: bool) -> np.ndarray:
    raise NotImplementedError

  def __getstate__(self):  # picklable for worker processes: dlib objects are not
    return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._load()

  def __call__(self, frame_rgb: np.ndarray) -> np.ndarray:
    _check_rgb(frame_rgb)
    h, w = frame_rgb.shape[:2]
    img, s = frame_rgb, 1.0
    if max(h, w) > self.max_side:
      s = self.max_side / max(h, w)
      img = cv2.resize(frame_rgb, (max(1, round(w * s)), max(1, round(h * s))),
                       interpolation=cv2.INTER_AREA)
    out = self._run(np.ascontiguousarray(img), near=False)
    out[:, :4] /= s
    return out[np.argsort(out[:, 0], kind="stable")]

  def detect_near(self, frame_rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Faces within ``roi_scale`` box sides of each box, searched on the
    patch rescaled so the box is ``roi_face_px`` pixels."""
    found = []
    for box in np.asarray(boxes, np.float64).reshape(-1, 4).tolist():
      x0, y0, x1, y1, z, rw, rh = near_window(box, frame_rgb.shape[:2], self.roi_scale,
                                              self.roi_face_px)
      if min(rw, rh) < self.roi_face_px // 2:
        continue
      patch = cv2.resize(frame_rgb[y0:y1, x0:x1], (rw, rh),
                         interpolation=cv2.INTER_AREA if z < 1 else cv2.INTER_LINEAR)
      d = self._run(patch, near=True)
      if len(d):
        d[:, [0, 2]] = d[:, [0, 2]] / z + x0
        d[:, [1, 3]] = d[:, [1, 3]] / z + y0
        found.append(d)
    return np.concatenate(found).astype(np.float32) if found else np.zeros((0, 5), np.float32)


def _rows(rects, scores) -> np.ndarray:
  if not len(rects):
    return np.zeros((0, 5), np.float32)
  return np.array([[r.left(), r.top(), r.right() + 1, r.bottom() + 1, sc]
                   for r, sc in zip(rects, scores)], np.float32)


@register_detector("dlib_hog")
class DlibHogDetector(_DlibDetector):
  """dlib's frontal HOG detector (module docstring)."""

  def __init__(self, max_side: int = 400, upsample: int = 0, threshold: float = 0.0,
               roi_scale: float = 1.6, roi_face_px: int = 100, roi_threshold: float = -0.2):
    if upsample not in (0, 1, 2):
      raise ValueError(f"upsample must be 0, 1 or 2, got {upsample!r}")
    self.max_side, self.upsample, self.threshold = int(max_side), int(upsample), float(threshold)
    self.roi_scale, self.roi_face_px = float(roi_scale), int(roi_face_px)
    self.roi_threshold = float(roi_threshold)
    self._load()

  def _load(self) -> None:
    self._hog = import_dlib().get_frontal_face_detector()

  def __repr__(self):
    return (f"DlibHogDetector(max_side={self.max_side}, upsample={self.upsample}, "
            f"threshold={self.threshold}, roi_scale={self.roi_scale}, "
            f"roi_face_px={self.roi_face_px}, roi_threshold={self.roi_threshold})")

  def _run(self, img: np.ndarray, near: bool) -> np.ndarray:
    rects, scores, _ = self._hog.run(img, 0 if near else self.upsample,
                                     self.roi_threshold if near else self.threshold)
    return _rows(rects, scores)


@register_detector("dlib_mmod")
class DlibMmodDetector(_DlibDetector):
  """dlib's CNN face detector (module docstring): slow on CPU."""

  def __init__(self, max_side: int = 640, upsample: int = 0, threshold: float = 0.0,
               near: str = "hog", roi_scale: float = 1.6, roi_face_px: int = 100):
    if near not in ("hog", "mmod"):
      raise ValueError(f"near must be 'hog' or 'mmod', got {near!r}")
    self.max_side, self.upsample, self.threshold = int(max_side), int(upsample), float(threshold)
    self.near, self.roi_scale, self.roi_face_px = near, float(roi_scale), int(roi_face_px)
    self._load()

  def _load(self) -> None:
    dlib = import_dlib()
    self._cnn = dlib.cnn_face_detection_model_v1(str(model_path("mmod_human_face_detector.dat")))
    self._hog = dlib.get_frontal_face_detector()

  def __repr__(self):
    return (f"DlibMmodDetector(max_side={self.max_side}, upsample={self.upsample}, "
            f"threshold={self.threshold}, near={self.near!r}, roi_scale={self.roi_scale}, "
            f"roi_face_px={self.roi_face_px})")

  def _run(self, img: np.ndarray, near: bool) -> np.ndarray:
    if near and self.near == "hog":
      rects, scores, _ = self._hog.run(img, 0, -0.2)
      return _rows(rects, scores)
    found = [d for d in self._cnn(img, 0 if near else self.upsample)
             if d.confidence >= self.threshold]
    return _rows([d.rect for d in found], [d.confidence for d in found])
