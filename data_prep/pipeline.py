"""One video -> T global frames + the main character's face track.

``process_video(path, cfg)`` runs, in order (module of each step):

  decode   (video.py)          every frame decoded (PyAV, OpenCV as fallback);
                               the detection frames kept as RGB, every frame
                               kept 1/4-size for the cuts (``decode``)
  sample   (video.py)          T frames uniformly over the clip
  cuts     (track.py, shots.py) scene cuts from frame differences, or
                               PySceneDetect (``cut_detector``)
  detect   (detect.py,         faces on a denser set of frames (a uniform grid
           detect_dlib.py)     holding the T sampled ones): a full search on
                               keyframes, a search near known faces between
  track    (track.py,          linking, gap bridging, splits at cuts, re-linking
           identity.py)        by colour, or into people by face descriptors
                               (``identity="dlib"``: tracklets that change
                               person are split, people are grouped across cuts)
  choose   (main_character.py) the main character's track (documented score):
                               a track is a person, across shots
  crop     (crop.py)           S x S square crops with margin; H x W frames

A sampled frame where the chosen track has no box (not detected and not
bridged) gets ``face_mask=False``, a zero crop and a zero box. A 1-frame video
gives T copies of that frame. Unusable input raises ``ClipError``; a clip with
no face anywhere raises ``ClipError("detect" | "track", "no face found ...")``.
A frame the detector raises on costs only that frame (``stats["detector_errors"]``).

Two front ends (``FRONT_ENDS``): PrepConfig's defaults, chosen on the drawn
synthetic faces (Haar, own cuts, colour re-linking), and ``REAL_FOOTAGE``
(dlib HOG, PySceneDetect, face descriptors), chosen on edited clips cut from
real photos (``benchmarks/realphoto_accuracy.py``: main character 100% vs
96.7% for Haar, 0 tracks holding two people vs 5). The rest of this
docstring measures the synthetic front end.

Speed: a full Haar search costs ~5x decoding a 320x240 frame, so it runs
only on keyframes; between them the detector looks only near known faces
(~0.3 ms per face found, 0.08 ms per face not found), and on keyframes only
near the faces the full search did not find again. Measured by
``benchmarks/data_prep_throughput.py`` (one process, 2-core VM, 2026-12-04,
decode and full passes interleaved): ratio full/decode 0.37-0.44 over ten
runs at 320x240 (16 clips of 16 frames, median 0.39; target 0.5; 0.34 and
0.37 with 2 worker processes, i.e. in CPU time), 0.50 and 0.56 at 640x480,
0.74-0.77 at 1280x720 (16 frames; 0.78 with 2 workers) and 0.76 for
96-frame 1280x720 clips (the detector works on frames shrunk to 240 px). The ratio fell from 0.45-0.54
because decoding got faster, not tracking slower: one swscale converter per
stream instead of one per frame, RGB only for the detection frames of long
clips, and ``python -m data_prep.build`` keeps freed memory
(``facetrack_jax/host_memory.py``). The whole pipeline per clip, each version
in its own process, taking turns with the code before (best of 6 passes):
320x240, 16 frames: 32-33 ms with the memory tunables, 35-37 without,
instead of 39-43 (three rounds); 1280x720 with the tunables: 123-133 ms
instead of 149-152 for 16 frames, 269-273 instead of 410-421 for 96 frames
(two rounds; 24 frames held instead of 96).
``keyframe_every=8`` drops one of the two full searches of a 16-frame clip:
main character 99.0% and IoU 0.84 instead of 99.5% and 0.86 (200 clips).

Accuracy on synthetic clips (``score_against_ground_truth``): 200 clips,
seed 3: main character right on 99.5%, mean box IoU 0.86, per-frame recall
0.98; 120 clips, seed 5: 100%, 0.86, 0.99.
"""

from __future__ import annotations

import dataclasses
import functools
import time

import cv2
import numpy as np

from data_prep import crop, detect, identity, main_character, shots, track, video
from data_prep.errors import ClipError


PREVIEW_HEIGHT = 240   # ClipResult.preview: sampled frames at most this tall

# The front end for real footage (``--annotations`` builds; chosen on the
# real-photo clips, benchmarks/realphoto_accuracy.py, realphoto_cuts.py and
# README): dlib's HOG detector, PySceneDetect's content cuts (threshold 45:
# at its default 27, 27-32% of the cuts it found were camera shake), people by
# face descriptors, and faces looked for on the T sampled frames only
# (max_detect_frames=8 with T=8, instead of 24: the same accuracy on the 60
# clips -- IoU 0.755 vs 0.751 -- for a third of the searches; with HOG's
# full search at 400 px it is what brings full / decode at 1280x720 from
# ~0.3 to ~0.5). The synthetic set keeps PrepConfig's defaults (Haar, own
# cuts, colour), which measure best on drawn faces.
REAL_FOOTAGE = dict(detector="dlib_hog", cut_detector="scenedetect_content",
                    cut_threshold=45.0, identity="dlib", max_detect_frames=8)
FRONT_ENDS = {"synthetic": {}, "real": REAL_FOOTAGE}


@dataclasses.dataclass(frozen=True)
class PrepConfig:
  """How clips are prepared; sizes match ``config.model`` (see ``from_model_config``)."""
  num_frames: int = 8            # T: frames sampled uniformly per clip
  frame_size: int = 64           # H = W of the global frames
  face_size: int = 32            # S: side of the square face crops
  margin: float = 0.25           # crop side = box side * (1 + 2 * margin)
  detector: str = "haar"         # name in detect.py's registry
  detector_kwargs: tuple = ()    # (key, value) pairs for get_detector
  detect_stride: int = 0         # detection frames: every k-th + the sampled; 0 = auto,
  max_detect_frames: int = 24    #   a uniform grid of at most this many (video.py)
  keyframe_every: int = 4        # full-frame search every k-th detection frame (detect.py)
  decode_max_side: int | None = 640  # frames are shrunk on decode beyond this
  max_video_frames: int = 5400   # longer videos are refused (video.decode_video); 0: no cap.
                                 # 3 min at 30 fps, FEC-Bench clips run seconds; the
                                 # cut signatures of 5400 640x360 frames take 230 MB
  max_gap: int = 3               # detection frames a track may miss and be bridged
  min_hits: int = 2              # shorter tracklets are dropped as false positives
  min_appearance: float = 0.5    # linking gate on appearance similarity
  max_size_ratio: float = 1.6    # linking gate on the change in box size
  relink_similarity: float = 0.8  # re-link tracklets at least this alike
  cut_hist_threshold: float = 0.35   # scene cut: colour histogram distance ...
  cut_pixel_threshold: float = 0.08  # ... and thumbnail difference both above
  cut_detector: str = "frames"   # "frames" (track.scene_cuts) or "scenedetect_<name>" (shots.py)
  cut_threshold: float | None = None  # the scenedetect detector's threshold (None: its default)
  identity: str = "appearance"   # re-link by "appearance" (colour) or "dlib" face descriptors
  identity_distance: float = 0.6  # "dlib": largest descriptor distance inside one person
  align_crops: bool = False      # rotate/scale face crops by 5 landmarks, eyes level (crop.py)

  @classmethod
  def from_model_config(cls, model_cfg, **overrides) -> "PrepConfig":
    """Sizes from ``config.model`` (num_frames, frame_size, face_size)."""
    return cls(num_frames=model_cfg.num_frames, frame_size=model_cfg.frame_size,
               face_size=model_cfg.face_size, **overrides)


@dataclasses.dataclass
class ClipResult:
  """Outputs (the TFDS example) and diagnostics of one clip.

  frames uint8[T, H, W, 3]; faces uint8[T, S, S, 3]; face_mask bool[T];
  face_boxes float32[T, 4] (x0, y0, x1, y1) in [0, 1] of the frame;
  face_bridged bool[T] (box interpolated over a detector miss);
  sampled int64[T] and det_frames int64[M] frame indices; keyframes bool[M]
  (full-frame search there, detect.detect_clip); detections: one
  float32[n, 5] per detection frame (pixels of the decoded frame); tracks;
  chosen_track (a track_id); track_scores (main_character.track_scores);
  cuts int64[K]; preview uint8[T, h, w, 3] small copies of the sampled
  frames for the contact sheet; frame_hw (decoded size), original_hw;
  identity: how tracks became people -- {"rule", "distance" (the descriptor
  distance used, or None), "links" (largest in-person distance of each
  re-linked person), "sampled" (the track ids -- people -- with a box on each
  sampled frame)}.
  """
  path: str
  frames: np.ndarray
  faces: np.ndarray
  face_mask: np.ndarray
  face_boxes: np.ndarray
  face_bridged: np.ndarray
  sampled: np.ndarray
  det_frames: np.ndarray
  keyframes: np.ndarray
  detections: list
  tracks: list
  chosen_track: int
  track_scores: list
  cuts: np.ndarray
  preview: np.ndarray
  frame_hw: tuple
  original_hw: tuple
  fps: float
  stats: dict
  identity: dict = dataclasses.field(default_factory=dict)


def detection_frames(num_frames: int, cfg: PrepConfig) -> np.ndarray:
  """int64[M]: the frames detection runs on (video.detection_indices), a
  superset of the ``cfg.num_frames`` sampled ones."""
  sampled = video.sample_indices(num_frames, cfg.num_frames)
  return video.detection_indices(num_frames, sampled, cfg.detect_stride, cfg.max_detect_frames)


def decode(path: str, cfg: PrepConfig = PrepConfig()) -> video.Video:
  """The decode step of ``process_video``: every frame is decoded, only the
  detection frames are converted to RGB and kept, and every frame is kept
  shrunk by ``track.SIGNATURE_SHRINK`` for the scene cuts; a video longer
  than ``cfg.max_video_frames`` is refused (``ClipError`` "decode")."""
  return video.decode_video(path, cfg.decode_max_side, functools.partial(detection_frames, cfg=cfg),
                            track.SIGNATURE_SHRINK, max_frames=cfg.max_video_frames)


def limit_threads(n: int) -> None:
  """At most ``n`` threads per clip in this process, for OpenCV (detection,
  resizes) and the decoder. For worker pools: W processes on C cores each
  take C // W. A 2-process pool on 2 cores (2026-12-04, six rounds taking
  turns, 48 clips of 320x240 each): 20.8-26.1 ms per clip with one thread
  per process against 24.2-27.0 with the defaults, faster in five rounds;
  720p clips 2-5% faster in two rounds."""
  cv2.setNumThreads(max(1, n))
  video.DECODE_THREADS = max(1, n)


@functools.lru_cache(maxsize=8)
def _cached_detector(name: str, kwargs: tuple) -> detect.Detector:
  return detect.get_detector(name, **dict(kwargs))


@functools.lru_cache(maxsize=1)
def _cached_embedder() -> identity.FaceEmbedder:
  return identity.FaceEmbedder()


def scene_cuts(vid: video.Video, cfg: PrepConfig) -> np.ndarray:
  """int64[K] frames that start a shot, from ``vid.small`` (every frame, shrunk):
  ``cfg.cut_detector`` "frames" (track.scene_cuts) or "scenedetect_<name>"
  (shots.scene_cuts)."""
  if cfg.cut_detector == "frames":
    return track.scene_cuts(vid.small, cfg.cut_hist_threshold, cfg.cut_pixel_threshold,
                            shrunk=True)
  if cfg.cut_detector.startswith("scenedetect_"):
    return shots.scene_cuts(vid.small, cfg.cut_detector[len("scenedetect_"):],
                            cfg.cut_threshold, fps=vid.fps, shrink=shots.SHRINK)
  raise ValueError(f"PrepConfig.cut_detector must be 'frames' or 'scenedetect_<name>' "
                   f"(<name> in {shots.DETECTORS}), got {cfg.cut_detector!r}")


def process_video(path: str, cfg: PrepConfig = PrepConfig(),
                  detector: detect.Detector | None = None) -> ClipResult:
  """Video file -> ClipResult (module docstring). Raises ClipError."""
  path = str(path)
  det = detector or _cached_detector(cfg.detector, tuple(cfg.detector_kwargs))
  t0 = time.perf_counter()
  vid = decode(path, cfg)
  n, (h, w) = vid.num_frames, vid.frames.shape[1:3]
  sampled = video.sample_indices(n, cfg.num_frames)
  det_frames = vid.index                     # detection_frames(n, cfg): they hold `sampled`
  frame = dict(zip(vid.index.tolist(), vid.frames))   # frame number -> RGB frame

  t1 = time.perf_counter()   # scene cuts count as tracking; detection needs them first
  cuts = scene_cuts(vid, cfg)
  t_cuts = time.perf_counter() - t1
  det_errors: list = []
  dets, keys = detect.detect_clip(det, frame, det_frames, cuts, cfg.keyframe_every,
                                  cfg.max_gap + 1, errors=det_errors)
  apps = [track.appearance(frame[f], d) for f, d in zip(det_frames, dets)]
  num_dets = int(sum(len(d) for d in dets))
  if num_dets == 0:
    why = (f"; the detector raised on {len(det_errors)} of them, first: {det_errors[0][1]}"
           if det_errors else "")
    raise ClipError("detect", f"no face found in any of {len(det_frames)} frames searched "
                    f"(detector {cfg.detector!r}){why}", path=path)

  t2 = time.perf_counter()
  linker = None
  if cfg.identity == "dlib":
    embed = _cached_embedder()
    linker = identity.IdentityLinker(
        lambda faces: embed.descriptors_of([(frame[int(det_frames[s])], b) for s, b in faces]),
        distance=cfg.identity_distance)
  elif cfg.identity != "appearance":
    raise ValueError(f"PrepConfig.identity must be 'appearance' or 'dlib', got {cfg.identity!r}")
  tracks = track.build_tracks(
      det_frames, dets, apps, cuts, max_gap=cfg.max_gap, min_hits=cfg.min_hits,
      min_appearance=cfg.min_appearance, max_size_ratio=cfg.max_size_ratio,
      relink_similarity=cfg.relink_similarity, identity=linker)
  chosen, scores = main_character.choose_main(tracks, len(det_frames), (h, w))
  if chosen is None:
    raise ClipError("track", f"no face found that persists: {num_dets} detections, none in "
                    f"{cfg.min_hits} linked frames", path=path)

  t3 = time.perf_counter()
  T, S, H = cfg.num_frames, cfg.face_size, cfg.frame_size
  frames = np.stack([crop.resize_frame(frame[f], H) for f in sampled])
  faces = np.zeros((T, S, S, 3), np.uint8)
  mask, bridged = np.zeros(T, bool), np.zeros(T, bool)
  boxes = np.zeros((T, 4), np.float32)
  scale = np.array([w, h, w, h], np.float32)
  main = tracks[chosen]
  for t, f in enumerate(sampled):
    hit = main.box_at(int(f))
    if hit is None:
      continue
    box, observed = hit
    if cfg.align_crops:
      eyes = _cached_embedder().landmarks(frame[f], box[None])[0]
      faces[t] = crop.crop_aligned(frame[f], box, eyes, cfg.margin, S)
    else:
      faces[t] = crop.crop_square(frame[f], box, cfg.margin, S)
    mask[t], bridged[t] = True, not observed
    boxes[t] = np.clip(box / scale, 0.0, 1.0)
  if h <= PREVIEW_HEIGHT:
    preview = np.stack([frame[f] for f in sampled])
  else:
    ph, pw = PREVIEW_HEIGHT, max(1, round(w * PREVIEW_HEIGHT / h))
    preview = np.stack([cv2.resize(frame[f], (pw, ph), interpolation=cv2.INTER_LINEAR)
                        for f in sampled])   # for the eye only: 0.2 ms a 640x360 frame, AREA 1.1
  t4 = time.perf_counter()

  stats = dict(frames_decoded=int(n), frames_kept=int(len(vid.frames)),
               detect_frames=int(len(det_frames)),
               keyframes=int(keys.sum()), detections=num_dets, tracks=len(tracks),
               cuts=int(len(cuts)), frames_with_face=int(mask.sum()),
               detector_errors=len(det_errors),
               descriptors=linker.computed if linker else 0,
               identity_splits=linker.splits if linker else 0,
               opencv_fallback=int(vid.backend == "opencv"),
               decoded_twice=int(vid.passes > 1),
               seconds=dict(decode=t1 - t0, detect=t2 - t1 - t_cuts, track=t3 - t2 + t_cuts,
                            crop=t4 - t3))
  ident = dict(rule=cfg.identity, links=linker.links if linker else [],
               distance=cfg.identity_distance if linker else None,
               sampled=[[tr.track_id for tr in tracks if tr.box_at(int(f)) is not None]
                        for f in sampled])
  return ClipResult(path, frames, faces, mask, boxes, bridged, sampled, det_frames, keys, dets,
                    tracks, chosen, scores, cuts, preview, (h, w), vid.original_size,
                    vid.fps, stats, ident)


# the ground-truth comparison lives in scoring.py; kept here for its callers
from data_prep.scoring import score_against_ground_truth  # noqa: E402,F401  pylint: disable=wrong-import-position
