"""Decode a video file into RGB frames, and pick the frames a clip is made of.

Decoding uses PyAV; when PyAV cannot open the file, OpenCV's
``cv2.VideoCapture`` is tried before giving up. Every failure is a
``ClipError`` naming the file and the cause:

  stage "open":   file missing, 0 bytes, a directory, not a video, no video stream
  stage "decode": decoding fails part-way, the file is truncated (fewer frames
                  than the container declares), no frame decodes at all, or the
                  video is longer than ``max_frames`` ("too long: ...")

A length cap (``max_frames``; the build's ``--max-video-frames``) keeps one
video from filling the memory: a video whose container declares more frames
is refused before decoding, and since a declared count can be wrong (or
missing), frames are counted while decoding and decoding stops at the first
frame past the cap.

Every frame is decoded (the codec needs them all), but only the frames a
caller keeps (``keep``) are converted to RGB and held: ``pipeline.decode``
keeps the detection frames (at most 24) and a 1/4-size copy of every frame
for the scene cuts, so a 96-frame 720p clip holds 24 frames of 640x360
instead of 96. The OpenCV fallback does the same (it converts every frame,
but holds only the kept ones and the small copies).

Sampling is uniform over the clip: frame ``i`` of ``T`` is the middle frame of
the ``i``-th of ``T`` equal segments. A clip shorter than ``T`` frames (down
to a single frame) repeats frames, so a 1-frame video gives ``T`` copies of
its one frame -- a still is a valid (if eventless) clip.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Callable

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from data_prep.errors import ClipError

# A container that declares N frames may deliver a couple fewer (B-frame
# edits, a dropped last frame); fewer than this many missing is not truncation.
_TRUNCATION_SLACK_FRAC = 0.02
_TRUNCATION_SLACK_MIN = 2

# Decoder threads per clip; 0 = FFmpeg's choice (one per core). Worker pools
# set 1 (``pipeline.limit_threads``): their processes already share the cores.
DECODE_THREADS = 0

KeepFn = Callable[[int], np.ndarray]   # number of frames N -> frame numbers to keep


@dataclasses.dataclass
class Video:
  """Decoded frames (RGB), frame rate, and the size of the original frames
  (``frames`` may be downscaled by ``max_side``).

  ``frames uint8[M, H, W, 3]`` are frames ``index int64[M]`` of the file's
  ``num_frames`` (all of them unless ``decode_video`` was given ``keep``);
  ``small uint8[num_frames, ceil(H/k), ceil(W/k), 3]``: every frame shrunk
  by ``k = small_factor`` (nearest pixel), or None. ``passes``: 2 when the
  file was decoded twice (see ``decode_video``)."""
  frames: np.ndarray
  fps: float
  original_size: tuple[int, int]   # (height, width) as stored in the file
  backend: str                     # "pyav" or "opencv"
  index: np.ndarray
  num_frames: int
  small: np.ndarray | None = None
  passes: int = 1                  # 2: decoded again, the declared frame count was wrong


def _check_file(path: str) -> None:
  if not os.path.exists(path):
    raise ClipError("open", "file not found", path=path)
  if os.path.isdir(path):
    raise ClipError("open", "is a directory, not a video file", path=path)
  if os.path.getsize(path) == 0:
    raise ClipError("open", "file is empty (0 bytes)", path=path)


def _shrunk_hw(h: int, w: int, max_side: int | None) -> tuple[int, int]:
  if not max_side or max(h, w) <= max_side:
    return h, w
  s = max_side / max(h, w)
  return max(1, round(h * s)), max(1, round(w * s))


def _shrink(frame: np.ndarray, max_side: int | None) -> np.ndarray:
  h, w = frame.shape[:2]
  hh, ww = _shrunk_hw(h, w, max_side)
  if (hh, ww) == (h, w):
    return frame
  return cv2.resize(frame, (ww, hh), interpolation=cv2.INTER_AREA)


def _check_count(path: str, n: int, declared: int, backend: str) -> None:
  if n == 0:
    raise ClipError("decode", f"no frame could be decoded ({backend})", path=path)
  slack = max(_TRUNCATION_SLACK_MIN, math.ceil(_TRUNCATION_SLACK_FRAC * declared))
  if declared > 0 and n < declared - slack:
    raise ClipError("decode", f"truncated: the container declares {declared} frames "
                    f"but only {n} decode ({backend})", path=path)


def _check_declared_length(path: str, declared: int, max_frames: int, fps: float,
                           backend: str) -> None:
  """``ClipError`` when the container declares more than ``max_frames`` frames."""
  if max_frames and declared > max_frames:
    secs = f" ({declared / fps:.1f} s at {fps:.3g} fps)" if fps > 0 else ""
    raise ClipError("decode", f"too long: the container declares {declared} frames{secs}, "
                    f"more than the cap of {max_frames} (max_video_frames; {backend})",
                    path=path)


def _too_long(path: str, declared: int, max_frames: int, backend: str) -> ClipError:
  said = f"it declares {declared}" if declared else "it declares no frame count"
  return ClipError("decode", f"too long: more than the cap of {max_frames} frames "
                   f"(max_video_frames): decoding stopped at frame {max_frames + 1}; "
                   f"{said} ({backend})", path=path)


def _wanted(keep: KeepFn | None, n: int) -> set[int] | None:
  """The frame numbers ``keep`` picks out of ``n``; None: convert every frame
  (no ``keep``, an unknown count, or half the frames or more kept anyway)."""
  if keep is None or n <= 0:
    return None
  want = {int(i) for i in keep(n)}
  return None if 2 * len(want) >= n else want


def shrink_nearest(frames, k: int) -> np.ndarray:
  """uint8[N, H, W, 3] (an array, or a list of frames) -> uint8[N, ceil(H/k),
  ceil(W/k), 3]: every k-th pixel of every k-th row. An array whose H and W
  are multiples of k (every common video size) is shrunk in one OpenCV call,
  stacked; otherwise one call per frame (a stacked shrink would mix rows
  across frames)."""
  if isinstance(frames, np.ndarray) and frames.shape[1] % k == 0 and frames.shape[2] % k == 0:
    n, h, w = frames.shape[:3]
    return cv2.resize(frames.reshape(n * h, w, 3), (w // k, n * h // k),
                      interpolation=cv2.INTER_NEAREST).reshape(n, h // k, w // k, 3)
  return np.stack([cv2.resize(f, (-(-f.shape[1] // k), -(-f.shape[0] // k)),
                              interpolation=cv2.INTER_NEAREST) for f in frames])


def _select(path, rgb, index, n, keep, small, small_factor, **video) -> Video:
  """``Video`` of the decoded frames ``rgb`` (numbers ``index``) cut down to
  ``keep(n)``. ``small``: every frame shrunk, or empty when ``rgb`` holds every
  frame (then they are shrunk here)."""
  if small_factor:
    small = np.stack(small) if small else shrink_nearest(rgb, small_factor)
  final = np.arange(n, dtype=np.int64) if keep is None else np.asarray(keep(n), np.int64)
  pos = {f: i for i, f in enumerate(index)}
  if any(int(f) not in pos for f in final):
    raise ClipError("decode", f"frames {sorted(set(map(int, final)) - set(pos))[:5]} of "
                    f"{n} were not kept", path=path)
  return Video(np.stack([rgb[pos[int(f)]] for f in final]), index=final, num_frames=n,
               small=small if small_factor else None, **video)


def _decode_pyav(path: str, max_side: int | None, keep: KeepFn | None = None,
                 small_factor: int = 0, count: int = 0, max_frames: int = 0) -> Video | None:
  """Returns None when PyAV cannot open the file (the caller tries OpenCV).
  ``count``: the true number of frames, when a first pass found the
  container's declared count wrong. ``max_frames``: the length cap (0: none)."""
  try:
    container = av.open(path)
  except (av.error.FFmpegError, OSError, ValueError):
    return None
  with container:
    if not container.streams.video:
      raise ClipError("open", "the file has no video stream", path=path)
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    if DECODE_THREADS:
      stream.codec_context.thread_count = DECODE_THREADS
    rate = stream.average_rate or stream.guessed_rate
    fps = float(rate) if rate else 0.0
    declared = int(stream.frames or 0)
    _check_declared_length(path, declared, max_frames, fps, "pyav")
    want = _wanted(keep, count or declared)   # None: convert every frame
    # One converter per output for the whole stream: ``frame.to_ndarray(format=...)``
    # sets up a new swscale context for every frame (0.3 ms of the 0.4 ms a
    # 320x240 frame costs; the output is the same to the bit).
    to_rgb, to_small = VideoReformatter(), VideoReformatter()
    rgb, index, small, size, n = [], [], [], None, 0
    try:
      for frame in container.decode(stream):
        if max_frames and n >= max_frames:
          raise _too_long(path, declared, max_frames, "pyav")
        if size is None:
          size = (frame.height, frame.width)
          hh, ww = _shrunk_hw(*size, max_side)
        if want is None or n in want:
          rgb.append(_shrink(to_rgb.reformat(frame, format="rgb24").to_ndarray(), max_side))
          index.append(n)
        if small_factor and want is not None:   # from YUV, 1/k^2 of the pixels
          small.append(to_small.reformat(
              frame, format="rgb24", width=-(-ww // small_factor),
              height=-(-hh // small_factor), interpolation="POINT").to_ndarray())
        n += 1
    except (av.error.FFmpegError, ValueError) as e:
      raise ClipError("decode", f"undecodable or truncated: decoding failed after "
                      f"{n} frames ({e})", path=path) from e
  _check_count(path, n, declared, "pyav")
  if want is not None and want != _wanted(keep, n):
    if count:
      raise ClipError("decode", f"{count} frames on the first pass, {n} on the second", path=path)
    # the container declared the wrong number of frames: once more, knowing it
    again = _decode_pyav(path, max_side, keep, small_factor, count=n, max_frames=max_frames)
    again.passes = 2
    return again
  return _select(path, rgb, index, n, keep, small, small_factor, fps=fps,
                 original_size=size, backend="pyav")


def _decode_opencv(path: str, max_side: int | None, keep: KeepFn | None = None,
                   small_factor: int = 0, count: int = 0, max_frames: int = 0) -> Video | None:
  """The fallback: every frame is converted, only the kept ones (and the
  small copies) are held; ``count`` and ``max_frames`` as for PyAV."""
  cap = cv2.VideoCapture(path)
  try:
    if not cap.isOpened():
      return None
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    declared = max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
    _check_declared_length(path, declared, max_frames, fps, "opencv")
    want = _wanted(keep, count or declared)   # None: hold every frame
    rgb, index, small, size, n = [], [], [], None, 0
    while True:
      ok, bgr = cap.read()
      if not ok:
        break
      if max_frames and n >= max_frames:
        raise _too_long(path, declared, max_frames, "opencv")
      size = size or bgr.shape[:2]
      frame = _shrink(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), max_side)
      if want is None or n in want:
        rgb.append(frame)
        index.append(n)
      if small_factor and want is not None:
        small.append(shrink_nearest(frame[None], small_factor)[0])
      n += 1
  finally:
    cap.release()
  _check_count(path, n, declared, "opencv")
  if want is not None and want != _wanted(keep, n):
    if count:
      raise ClipError("decode", f"{count} frames on the first pass, {n} on the second", path=path)
    again = _decode_opencv(path, max_side, keep, small_factor, count=n, max_frames=max_frames)
    again.passes = 2
    return again
  return _select(path, rgb, index, n, keep, small, small_factor, fps=fps,
                 original_size=tuple(size), backend="opencv")


def decode_video(path: str, max_side: int | None = None, keep: KeepFn | None = None,
                 small_factor: int = 0, max_frames: int = 0) -> Video:
  """The frames of ``path`` as ``uint8[M, H, W, 3]`` RGB.

  ``max_side``: frames whose longer side exceeds it are downscaled on decode
  (INTER_AREA) to bound memory; ``original_size`` keeps the stored size.
  ``keep(N) -> int[M]``: only these of the file's N frames are kept, and
  when they are fewer than half, only they are converted to RGB (every frame
  is still decoded: the codec needs them). PyAV reads N from the container
  first and decodes a second time in the rare case that it was wrong
  (``Video.passes``; the build summary counts them as ``decoded_twice``).
  ``small_factor = k > 0``: ``Video.small`` holds every frame shrunk by k
  (nearest pixel): of the RGB frame when every frame is converted, else
  converted from YUV at that size (cheap; a few grey levels off the other).
  ``max_frames > 0``: a video longer than this many frames is refused
  (``ClipError`` "decode", "too long: ..." naming its length and the cap),
  by its declared count before decoding, else as soon as frame
  ``max_frames + 1`` decodes; so at most ``max_frames`` small copies are held.
  Raises ``ClipError`` (stage "open" or "decode") for unusable files.
  """
  path = os.fspath(path)
  _check_file(path)
  video = _decode_pyav(path, max_side, keep, small_factor, max_frames=max_frames)
  if video is None:
    video = _decode_opencv(path, max_side, keep, small_factor, max_frames=max_frames)
  if video is None:
    raise ClipError("open", "not a video, or truncated beyond repair: neither PyAV "
                    "nor OpenCV can open it", path=path)
  return video


def sample_indices(num_frames: int, num_samples: int) -> np.ndarray:
  """``int64[num_samples]``: uniform frame indices, the middle of each of
  ``num_samples`` equal segments of ``[0, num_frames)``; repeats when
  ``num_frames < num_samples``."""
  if num_frames < 1 or num_samples < 1:
    raise ValueError(f"need num_frames >= 1 and num_samples >= 1, got "
                     f"{num_frames}, {num_samples}")
  idx = np.floor((np.arange(num_samples) + 0.5) * num_frames / num_samples)
  return np.minimum(idx.astype(np.int64), num_frames - 1)


def detection_indices(num_frames: int, sampled: np.ndarray, stride: int = 0,
                      max_frames: int = 48) -> np.ndarray:
  """``int64[M]``: sorted frames to run the face detector on; always a
  superset of ``sampled`` (so each output frame has a real detection pass).

  ``stride > 0``: every ``stride``-th frame, the last frame and the sampled
  ones. ``stride == 0`` (auto): uniform sampling at ``k`` times the density
  of the ``T = len(sampled)`` output frames, ``k`` the largest odd number with
  ``k * T <= min(num_frames, max_frames)`` (an odd ``k`` puts the sampled
  frames on the finer grid), at least the sampled frames.
  """
  if stride > 0:
    grid = np.arange(0, num_frames, stride)
    return np.unique(np.concatenate([grid, [num_frames - 1], sampled])).astype(np.int64)
  t = len(sampled)
  k = max(1, min(num_frames, max_frames) // t)
  k -= 1 - k % 2
  return np.unique(np.concatenate([sample_indices(num_frames, k * t), sampled])).astype(np.int64)
