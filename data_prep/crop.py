"""Square face crops and resized global frames.

Crop geometry: the square is centred on the face box, its side is
``max(box width, box height) * (1 + 2 * margin)`` (``margin`` of the box side
added on each side). Where the square leaves the frame it is clipped at the
border and the missing part is black (zeros): the face stays centred and
undistorted, nothing is invented. The square is then resized to ``S x S``
(INTER_AREA when shrinking, INTER_LINEAR when enlarging).

Shrinking first halves the image (exact means of 2x2 pixels, OpenCV's fast
integer path) while it is at least twice the target and of even size, then
takes INTER_AREA for the rest: within 1 grey level on average of one
INTER_AREA step, and 1.7x faster for 320x240 -> 64x64.

Global frames are resized to ``H x W`` without keeping the aspect ratio, so a
box normalised to [0, 1] of the original frame is also its place in the
resized frame.
"""

from __future__ import annotations

import cv2
import numpy as np


def _resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
  shrink = img.shape[0] >= h and img.shape[1] >= w
  if not shrink:
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
  while (img.shape[0] >= 2 * h and img.shape[1] >= 2 * w
         and img.shape[0] % 2 == 0 and img.shape[1] % 2 == 0):   # exact 2x2 means: fast
    img = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)
  return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)


def square_box(box: np.ndarray, margin: float) -> np.ndarray:
  """float[4] (x0, y0, x1, y1) -> float64[4] the square crop around it (may leave the frame)."""
  x0, y0, x1, y1 = (float(v) for v in box[:4])
  cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
  half = max(x1 - x0, y1 - y0) * (1 + 2 * margin) / 2
  return np.array([cx - half, cy - half, cx + half, cy + half])


def crop_square(frame: np.ndarray, box: np.ndarray, margin: float, size: int) -> np.ndarray:
  """uint8[H, W, 3], face box in pixels -> uint8[size, size, 3] square crop."""
  h, w = frame.shape[:2]
  sq = square_box(box, margin)
  side = max(1, int(round(sq[2] - sq[0])))
  sx0, sy0 = int(round(sq[0])), int(round(sq[1]))
  canvas = np.zeros((side, side, 3), np.uint8)
  fx0, fy0 = max(sx0, 0), max(sy0, 0)                    # clipped at the border
  fx1, fy1 = min(sx0 + side, w), min(sy0 + side, h)
  if fx1 > fx0 and fy1 > fy0:
    canvas[fy0 - sy0:fy1 - sy0, fx0 - sx0:fx1 - sx0] = frame[fy0:fy1, fx0:fx1]
  return _resize(canvas, size, size)


def resize_frame(frame: np.ndarray, height: int, width: int | None = None) -> np.ndarray:
  """uint8[h, w, 3] -> uint8[height, width, 3] (aspect ratio not kept)."""
  return _resize(frame, height, width or height)


def eye_angle(landmarks5: np.ndarray) -> float:
  """float[5, 2] dlib 5-point landmarks (two corners of one eye, two of the
  other, the nose) -> the eye line's angle in degrees from level (image-left
  eye to image-right eye, positive when the right one is lower)."""
  lm = np.asarray(landmarks5, np.float64)
  a, b = lm[0:2].mean(0), lm[2:4].mean(0)
  left, right = (a, b) if a[0] <= b[0] else (b, a)
  return float(np.degrees(np.arctan2(right[1] - left[1], right[0] - left[0])))


def crop_aligned(frame: np.ndarray, box: np.ndarray, landmarks5: np.ndarray, margin: float,
                 size: int) -> np.ndarray:
  """As ``crop_square``, turned so the eyes are level: the same square (box
  centre, box side x (1 + 2 margin)), rotated by ``eye_angle``. The square
  is cut with room for the turn (about sqrt 2 wider, area-resized like
  ``crop_square``), then rotated and its middle ``size`` x ``size`` kept."""
  wide = int(np.ceil(size * np.sqrt(2))) | 1
  room = crop_square(frame, box, ((1 + 2 * margin) * wide / size - 1) / 2, wide)
  rot = cv2.getRotationMatrix2D(((wide - 1) / 2, (wide - 1) / 2), eye_angle(landmarks5), 1.0)
  rot[:, 2] -= (wide - size) / 2
  return cv2.warpAffine(room, rot, (size, size), flags=cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_CONSTANT)
