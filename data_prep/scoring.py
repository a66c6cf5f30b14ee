"""A prepared clip (``pipeline.ClipResult``) against its ground truth: the main
character, its boxes, the shot cuts, and whether any track holds two people.

Ground truth (the synthetic set's and the real-photo set's
``ground_truth/<id>.json``): ``{"main": face index, "faces": [{"boxes":
[[x0, y0, x1, y1] pixels of the original frame, or null] per frame,
"identity": name (optional)}], "cuts": [first frame of each new shot]
(optional)}``. Each face is one person for the whole clip.
"""

from __future__ import annotations

import numpy as np

from data_prep import detect

CUT_TOLERANCE = 1       # a found cut within this many frames of a true one is a hit
PURITY_IOU = 0.3        # a track box belongs to the GT face it overlaps at least this much


def _iou(a, b) -> float:
  return float(detect.box_iou(np.asarray(a)[None], np.asarray(b)[None])[0, 0])


def cut_scores(found, true, tolerance: int = CUT_TOLERANCE) -> dict:
  """Found and true cut frames -> {"cuts_true", "cuts_hit" (true cuts with a
  found one within ``tolerance``), "cuts_found", "cuts_false" (found ones
  near no true cut)}."""
  found, true = [int(c) for c in found], [int(c) for c in true]
  near = lambda c, others: any(abs(c - o) <= tolerance for o in others)
  return {"cuts_true": len(true), "cuts_hit": sum(near(c, found) for c in true),
          "cuts_found": len(found), "cuts_false": sum(not near(c, true) for c in found)}


def score_against_ground_truth(result, gt: dict) -> dict:
  """Compares a ``pipeline.ClipResult`` with a clip's ground truth.

  The chosen track is the GT face it overlaps most (sum of IoU over its
  detection frames); ``main_correct``: that face is ``gt["main"]``.
  ``mean_iou``: mean IoU of ``face_boxes`` and the GT main box over the
  sampled frames where both exist (0 if none); ``recall``: share of sampled
  frames with a GT main box that have a box; ``frames_compared``: how many
  frames ``mean_iou`` averages. ``tracks_mixed``: tracks whose observed
  boxes belong (IoU >= ``PURITY_IOU``) to two or more GT faces -- two people
  in one track; ``frame_identities``: per sampled frame, the GT identity
  (name, else face index) of the chosen track's box there, or None;
  ``identity_distance``: the descriptor distance the clip was linked with
  (None: by colour). With ``gt["cuts"]``: the ``cut_scores`` counts.
  """
  oh, ow = result.original_hw
  h, w = result.frame_hw
  to_norm_gt = np.array([ow, oh, ow, oh], np.float64)
  to_norm_trk = np.array([w, h, w, h], np.float64)
  faces = gt["faces"]
  names = [f.get("identity", i) for i, f in enumerate(faces)]

  def gt_box(face: dict, f: int):
    seq = face["boxes"]
    b = seq[f] if f < len(seq) else None
    return None if b is None else np.asarray(b, np.float64) / to_norm_gt

  def owner(box_norm, f: int):
    """Index of the GT face this box (normalised) belongs to, or None."""
    best, who = PURITY_IOU, None
    for i, face in enumerate(faces):
      g = gt_box(face, f)
      if g is not None and (v := _iou(box_norm, g)) >= best:
        best, who = v, i
    return who

  main = result.tracks[result.chosen_track]
  overlap = []
  for face in faces:
    s = 0.0
    for f, box in zip(main.frames, main.boxes):
      g = gt_box(face, int(f))
      s += 0.0 if g is None else _iou(box / to_norm_trk, g)
    overlap.append(s)
  best = int(np.argmax(overlap)) if overlap and max(overlap) > 0 else -1

  mixed = 0
  for t in result.tracks:
    people = {owner(b / to_norm_trk, int(f)) for f, b, o in zip(t.frames, t.boxes, t.observed)
              if o} - {None}
    mixed += len(people) > 1

  ious, present, found, idents = [], 0, 0, []
  gt_main = faces[int(gt["main"])]
  for t, f in enumerate(result.sampled):
    who = owner(result.face_boxes[t], int(f)) if result.face_mask[t] else None
    idents.append(None if who is None else names[who])
    g = gt_box(gt_main, int(f))
    if g is None:
      continue
    present += 1
    if result.face_mask[t]:
      found += 1
      ious.append(_iou(result.face_boxes[t], g))
  out = {"main_correct": bool(best == int(gt["main"])),
         "mean_iou": float(np.mean(ious)) if ious else 0.0,
         "recall": found / present if present else 1.0,
         "frames_compared": len(ious), "tracks_mixed": mixed,
         "frame_identities": idents,
         "identity_distance": (result.identity or {}).get("distance")}
  if "cuts" in gt:
    out.update(cut_scores(result.cuts, gt["cuts"]))
  return out
