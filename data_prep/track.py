"""Face detections -> tracks: linking, gap bridging, scene cuts, re-linking.

Inputs are the frames the detector ran on (``det_frames``, sorted frame
indices), the boxes found there and an appearance descriptor per box.

1. Scene cuts (``scene_cuts``): frame ``i`` starts a new shot when its colour
   histogram *and* its thumbnail both differ strongly from frame ``i-1``.
2. Linking (``link``): detection frames are visited in order; live tracklets
   and new boxes are matched by the Hungarian algorithm on
   ``cost = 1 - (proximity + appearance) / 2`` where proximity is
   ``max(IoU, 1 - centre_shift / side)``; a pair is allowed only when the
   sizes differ by less than ``max_size_ratio``, proximity > 0 and the
   appearance similarity is at least ``min_appearance``. A tracklet dies after
   ``max_gap`` detection frames without a match, and at every scene cut (the
   split). Unmatched boxes start tracklets.
3. Bridging: inside a tracklet, the detection frames it missed (at most
   ``max_gap`` in a row, by construction) get a box linearly interpolated
   between the neighbouring observations, marked ``observed=False``.
   Nothing is filled beyond that.
4. Tracklets with fewer than ``min_hits`` observations are dropped (unless the
   whole shot has fewer detection frames than that).
5. Re-linking (``relink``): tracklets that never overlap in time (across cuts
   or long gaps) are merged into one person, most similar pair first, when all
   their pairwise appearance similarities are at least ``relink_similarity``.
   With ``identity`` (``identity.IdentityLinker``: face descriptors) a
   tracklet is first split where it changes person, and the similarity is
   minus the descriptor distance, at least minus ``identity.distance``.

Appearance (``appearance``) is a 2x2 grid of 4x4x4-bin RGB histograms of the
face box (so hair on top and mouth below count separately), square-rooted and
L2-normalised: a dot product of two is their Bhattacharyya coefficient.
"""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from data_prep import video
from data_prep.detect import box_iou


def _side(box: np.ndarray) -> np.ndarray:
  return np.sqrt(np.maximum((box[..., 2] - box[..., 0]) * (box[..., 3] - box[..., 1]), 1e-9))


def _centre(box: np.ndarray) -> np.ndarray:
  return np.stack([(box[..., 0] + box[..., 2]) / 2, (box[..., 1] + box[..., 3]) / 2], -1)


# --------------------------------------------------------------- appearance

APPEARANCE_DIM = 256
_CELL_OFFSET = 64 * np.kron(np.arange(4, dtype=np.int32).reshape(2, 2), np.ones((8, 8), np.int32))


def _colour_bins(rgb: np.ndarray) -> np.ndarray:
  """uint8[..., 3] -> uint8[...] colour bin in [0, 64): 4 levels per channel."""
  q = rgb >> 6
  return (q[..., 0] << 4) | (q[..., 1] << 2) | q[..., 2]


def appearance(frame_rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
  """uint8[H, W, 3], float[n, >=4] boxes (pixels) -> float32[n, 256] unit descriptors."""
  h, w = frame_rgb.shape[:2]
  boxes = np.asarray(boxes, np.float64)
  bins = np.empty((len(boxes), 16, 16), np.int32)
  for i, (bx0, by0, bx1, by1) in enumerate(boxes[:, :4].tolist()):
    x0, y0 = min(max(math.floor(bx0), 0), w - 1), min(max(math.floor(by0), 0), h - 1)
    x1, y1 = min(max(math.ceil(bx1), x0 + 1), w), min(max(math.ceil(by1), y0 + 1), h)
    bins[i] = _colour_bins(cv2.resize(frame_rgb[y0:y1, x0:x1], (16, 16),
                                      interpolation=cv2.INTER_AREA))
  bins += _CELL_OFFSET                                          # 64 bins per 8x8 quadrant
  offset = APPEARANCE_DIM * np.arange(len(boxes), dtype=np.int32)[:, None, None]
  hist = np.bincount((bins + offset).ravel(), minlength=APPEARANCE_DIM * len(boxes))
  desc = np.sqrt(hist.reshape(-1, APPEARANCE_DIM).astype(np.float32) / 256 * 4)  # 256 pixels
  return desc / np.linalg.norm(desc, axis=1, keepdims=True)


# --------------------------------------------------------------- scene cuts

SIGNATURE_SHRINK = 4   # frame signatures look at every 4th pixel of every 4th row


def frame_signatures(frames: np.ndarray, shrunk: bool = False) -> tuple[np.ndarray, np.ndarray]:
  """uint8[N, H, W, 3] -> (float32[N, 64] colour histograms each summing to 1,
  float32[N, 16, 16, 3] thumbnails in [0, 1]), both from a nearest-pixel
  shrink by ``SIGNATURE_SHRINK`` (``video.shrink_nearest``: cheap, and enough
  for cuts). ``shrunk``: ``frames`` are already that small
  (``video.decode_video(small_factor=)``)."""
  n = len(frames)
  sub = frames if shrunk else video.shrink_nearest(frames, SIGNATURE_SHRINK)
  codes = _colour_bins(sub).reshape(n, -1)
  hist_nc = np.bincount((codes + 64 * np.arange(n, dtype=np.int32)[:, None]).ravel(),
                        minlength=64 * n).reshape(n, 64).astype(np.float32)
  # one INTER_AREA call for all thumbnails: 16 rows per frame make the row
  # scale a binary fraction, so no output row straddles two frames
  hs, ws = sub.shape[1:3]
  thumb_nhwc = cv2.resize(sub.reshape(n * hs, ws, 3), (16, n * 16),
                          interpolation=cv2.INTER_AREA).reshape(n, 16, 16, 3)
  return hist_nc / hist_nc.sum(1, keepdims=True), thumb_nhwc.astype(np.float32) / 255.0


def scene_cuts(frames: np.ndarray, hist_threshold: float = 0.35,
               pixel_threshold: float = 0.08, shrunk: bool = False) -> np.ndarray:
  """uint8[N, H, W, 3] -> int64[K]: frames that start a new shot (never 0).

  A cut needs both: half the L1 distance of the colour histograms (in
  [0, 1]) above ``hist_threshold`` and mean absolute thumbnail difference
  above ``pixel_threshold`` (motion alone moves pixels, not histograms).
  ``shrunk``: as in ``frame_signatures``.
  """
  hist_nc, thumb_nhwc = frame_signatures(frames, shrunk)
  dh_n = 0.5 * np.abs(np.diff(hist_nc, axis=0)).sum(1)       # between frame i and i + 1
  dp_n = np.abs(np.diff(thumb_nhwc, axis=0)).mean((1, 2, 3))
  return (np.flatnonzero((dh_n > hist_threshold) & (dp_n > pixel_threshold)) + 1).astype(np.int64)


# ------------------------------------------------------------------- tracks

def _split_people(tracklets: list, identity) -> list:
  """Each tracklet cut where ``identity.split_point`` says it changes person."""
  out, todo = [], list(tracklets)
  while todo:
    t = todo.pop()
    k = identity.split_point(t.steps, t.boxes)
    if k is None:
      out.append(t)
    else:
      todo += t.split(k)
  return sorted(out, key=lambda t: (t.steps[0], float(t.boxes[0][0])))


@dataclasses.dataclass
class Track:
  """One person's face over detection frames (sorted ``frames``).

  ``boxes float32[K, 4]`` pixels; ``observed bool[K]`` (False = bridged by
  interpolation); ``scores float32[K]`` (detector score, 0 where bridged);
  ``appearance float32[D]`` mean descriptor of the observations;
  ``segments``: ``(first, last)`` frame of each re-linked piece.
  """
  track_id: int
  frames: np.ndarray
  boxes: np.ndarray
  observed: np.ndarray
  scores: np.ndarray
  appearance: np.ndarray
  segments: list[tuple[int, int]]

  def box_at(self, frame: int) -> tuple[np.ndarray, bool] | None:
    """(box, observed) at a detection frame, or None where absent."""
    k = np.searchsorted(self.frames, frame)
    if k < len(self.frames) and self.frames[k] == frame:
      return self.boxes[k], bool(self.observed[k])
    return None


class _Tracklet:
  """A growing track inside one shot; ``steps`` are positions in det_frames."""

  def __init__(self, step: int, det: np.ndarray, app: np.ndarray):
    self.steps, self.boxes, self.scores, self.apps = [], [], [], []
    self.app_sum = np.zeros_like(app, np.float64)
    self.add(step, det, app)

  def add(self, step: int, det: np.ndarray, app: np.ndarray) -> None:
    self.steps.append(step)
    self.boxes.append(det[:4])
    self.scores.append(det[4])
    self.apps.append(app)
    self.app_sum += app
    self.mean_app = (self.app_sum / max(np.linalg.norm(self.app_sum), 1e-9)).astype(np.float32)

  def split(self, k: int) -> list["_Tracklet"]:
    """[observations before k, from k on] as two tracklets."""
    parts = []
    for lo, hi in ((0, k), (k, len(self.steps))):
      t = _Tracklet(self.steps[lo], np.append(self.boxes[lo], self.scores[lo]), self.apps[lo])
      for i in range(lo + 1, hi):
        t.add(self.steps[i], np.append(self.boxes[i], self.scores[i]), self.apps[i])
      parts.append(t)
    return parts


def _affinity(live: list[_Tracklet], dets: np.ndarray, apps: np.ndarray,
              min_appearance: float, max_size_ratio: float) -> np.ndarray:
  """float[L, n] in [0, 1] between live tracklets and new boxes, -inf where
  the pair is not allowed."""
  last_l4 = np.stack([t.boxes[-1] for t in live])
  iou_ln = box_iou(last_l4, dets)
  shift_ln = np.linalg.norm(_centre(dets[:, :4])[None] - _centre(last_l4)[:, None], axis=-1)
  side_l1 = _side(last_l4)[:, None]
  prox_ln = np.maximum(iou_ln, 1 - shift_ln / side_l1)
  ratio_ln = _side(dets[:, :4])[None] / side_l1
  sim_ln = np.stack([t.mean_app for t in live]) @ apps.T    # ld,nd->ln
  ok = ((prox_ln > 0) & (ratio_ln < max_size_ratio) & (ratio_ln > 1 / max_size_ratio)
        & (sim_ln >= min_appearance))
  return np.where(ok, (prox_ln + sim_ln) / 2, -np.inf)


def link(det_frames: np.ndarray, dets: list[np.ndarray], apps: list[np.ndarray],
         cuts: np.ndarray, *, max_gap: int = 3, min_appearance: float = 0.5,
         max_size_ratio: float = 1.6) -> list[_Tracklet]:
  """Online association over detection frames; tracklets never span a cut."""
  shot = np.searchsorted(np.asarray(cuts), det_frames, side="right")  # shot id per step
  done, live = [], []
  for s, (d, a) in enumerate(zip(dets, apps)):
    still = []
    for t in live:   # end tracklets that missed too long or are cut off
      (still if s - t.steps[-1] - 1 <= max_gap and shot[t.steps[-1]] == shot[s] else done).append(t)
    live = still
    matched = set()
    if live and len(d):
      aff = _affinity(live, d, a, min_appearance, max_size_ratio)
      rows, cols = linear_sum_assignment(np.where(np.isfinite(aff), 1 - aff, 1e6))
      for r, c in zip(rows, cols):
        if np.isfinite(aff[r, c]):
          live[r].add(s, d[c], a[c])
          matched.add(c)
    for c in range(len(d)):
      if c not in matched:
        live.append(_Tracklet(s, d[c], a[c]))
  return done + live


def _bridge(t: _Tracklet, det_frames: np.ndarray) -> tuple:
  """Interpolates the tracklet over the detection frames it missed."""
  steps = np.asarray(t.steps)
  all_steps = np.arange(steps[0], steps[-1] + 1)
  f_obs, f_all = det_frames[steps].astype(np.float64), det_frames[all_steps].astype(np.float64)
  obs_boxes = np.stack(t.boxes).astype(np.float64)
  boxes = np.stack([np.interp(f_all, f_obs, obs_boxes[:, j]) for j in range(4)], -1)
  observed = np.isin(all_steps, steps)
  scores = np.zeros(len(all_steps), np.float32)
  scores[observed] = t.scores
  return det_frames[all_steps], boxes.astype(np.float32), observed, scores


def relink(spans: list[tuple[int, int]], sim: np.ndarray, min_similarity: float) -> list[int]:
  """Groups time-disjoint tracklets of one person.

  ``spans``: (first, last) frame per tracklet; ``sim float[n, n]``: how alike
  two tracklets are (colour: dot products of unit appearance descriptors;
  identity: minus the face-descriptor distance). Returns a group label per
  tracklet (complete linkage: every pair in a group is at least
  ``min_similarity`` alike and no two overlap).
  """
  n = len(spans)
  group = list(range(n))
  pairs = sorted(((sim[i, j], i, j) for i in range(n) for j in range(i + 1, n)
                  if sim[i, j] >= min_similarity), key=lambda p: (-p[0], p[1], p[2]))
  for _, i, j in pairs:
    gi, gj = group[i], group[j]
    if gi == gj:
      continue
    a = [k for k in range(n) if group[k] == gi]
    b = [k for k in range(n) if group[k] == gj]
    overlap = any(spans[p][0] <= spans[q][1] and spans[q][0] <= spans[p][1] for p in a for q in b)
    if not overlap and all(sim[p, q] >= min_similarity for p in a for q in b):
      for k in b:
        group[k] = gi
  return group


def build_tracks(det_frames: np.ndarray, dets: list[np.ndarray], apps: list[np.ndarray],
                 cuts: np.ndarray, *, max_gap: int = 3, min_hits: int = 2,
                 min_appearance: float = 0.5, max_size_ratio: float = 1.6,
                 relink_similarity: float = 0.8, identity=None) -> list[Track]:
  """Linking + bridging + pruning + re-linking (module docstring). Tracks are
  numbered by first appearance; each holds its re-linked pieces.
  ``identity`` (an ``identity.IdentityLinker``): tracklets are split where
  they change person and re-linked by face descriptors instead of colour."""
  det_frames = np.asarray(det_frames, np.int64)
  tracklets = link(det_frames, dets, apps, cuts, max_gap=max_gap,
                   min_appearance=min_appearance, max_size_ratio=max_size_ratio)
  shot = np.searchsorted(np.asarray(cuts), det_frames, side="right")
  shot_len = np.bincount(shot)
  tracklets = [t for t in tracklets if len(t.steps) >= min(min_hits, shot_len[shot[t.steps[0]]])]
  if identity is not None:
    identity.prefetch(identity.ends([(t.steps, t.boxes) for t in tracklets]))  # one batch
    tracklets = _split_people(tracklets, identity)
  pieces = [_bridge(t, det_frames) for t in tracklets]
  spans = [(int(p[0][0]), int(p[0][-1])) for p in pieces]
  descs = np.stack([t.mean_app for t in tracklets]) if tracklets else np.zeros((0, 1))
  if identity is None:
    groups = relink(spans, descs @ descs.T, relink_similarity)
  else:
    sim = identity.similarity([(t.steps, t.boxes) for t in tracklets])
    groups = relink(spans, sim, -identity.distance)
    for g in set(groups):
      members = [k for k in range(len(groups)) if groups[k] == g]
      if len(members) > 1:
        identity.links.append(float(-sim[np.ix_(members, members)].min()))

  members_of = {}
  for k in sorted(range(len(groups)), key=lambda k: spans[k][0]):
    members_of.setdefault(groups[k], []).append(k)     # groups in order of first appearance
  tracks = []
  for members in members_of.values():
    cat = lambda i: np.concatenate([pieces[k][i] for k in members])
    app = np.mean([descs[k] * len(tracklets[k].steps) for k in members], axis=0)
    tracks.append(Track(len(tracks), cat(0), cat(1), cat(2), cat(3),
                        (app / np.linalg.norm(app)).astype(np.float32),
                        [spans[k] for k in members]))
  return tracks
