"""Real face photographs that ship inside PyPI packages, and where to find them.

The real-footage fixtures (``data_prep/realphoto.py``) are edited clips made
from these photos. The photos are not in this repository (their licences are
the packages', not ours): they are taken from the packages at test time.

  face_recognition 1.3.0 sdist   tests/test_images/ obama.jpg, obama2.jpg,
                                 obama3.jpg, biden.jpg, 32bit.png (obama2 as RGBA)
  scikit-image 0.26.0 wheel      skimage/data/astronaut.png (Eileen Collins)
  matplotlib 3.11.2 wheel        mpl-data/sample_data/grace_hopper.jpg

``fetch(DIR)`` (``python -m data_prep.realphoto_sources --fetch DIR``; ``make
photos`` runs it into ``.cache/photos``) downloads the three archives with
plain ``pip download`` from the package registry -- no other network -- and
extracts the photos. ``find_photos()`` looks in ``$FACETRACK_PHOTOS``, then
``.cache/photos`` of the repository, then installed packages (scikit-image,
matplotlib); every file is checked against its SHA-256, so the ground-truth
boxes below always fit the pixels. ``missing_reason()`` says which are absent
and how to get them (tests skip with it).

Face boxes ``(x0, y0, x1, y1)`` are in pixels of the full photo: dlib's CNN
face detector (``mmod_human_face_detector``, upsampled once on the photo
shrunk to at most 900 px), checked by eye; the faces the detector did not
find (the woman at the right edge of obama2, blurred and half outside the
photo; her box is by eye) are listed too,
as ``identity=None`` (never scored, never the main character).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import subprocess
import sys
import tarfile
import tempfile
import zipfile

import cv2
import numpy as np

REPO_CACHE = pathlib.Path(__file__).resolve().parent.parent / ".cache" / "photos"
ENV_VAR = "FACETRACK_PHOTOS"


@dataclasses.dataclass(frozen=True)
class Face:
  identity: str | None           # None: a face in the photo we never score
  box: tuple[float, float, float, float]


@dataclasses.dataclass(frozen=True)
class Photo:
  name: str                      # file name
  sha256: str
  faces: tuple[Face, ...]
  package: str                   # the pip requirement it comes from
  member: str                    # path inside the archive (suffix match)

  @property
  def identity(self) -> str:
    return next(f.identity for f in self.faces if f.identity)


_FR = "face-recognition==1.3.0"
_SK = "scikit-image==0.26.0"
_MPL = "matplotlib==3.11.2"

PHOTOS: dict[str, Photo] = {p.name: p for p in [
    Photo("obama.jpg", "0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6",
          (Face("obama", (363, 138, 620, 395)),), _FR, "tests/test_images/obama.jpg"),
    Photo("obama2.jpg", "a7efcc907375274796f39646510704aa86672d59f6d5469d69af3c85590976a6",
          (Face("obama", (176, 284, 448, 555)), Face(None, (575, 440, 626, 620))), _FR,
          "tests/test_images/obama2.jpg"),
    Photo("obama3.jpg", "76ac6bf97c36dc2da0ad16a537d6a5ac1b10f48d49aac29a0cca9a17cdbc3ca3",
          (Face("obama", (625, 272, 931, 575)),), _FR, "tests/test_images/obama3.jpg"),
    Photo("biden.jpg", "3c17508bb91554c637a2eabddfae790e5bb1caba93130814fc2ac50be9760c4c",
          (Face("biden", (416, 228, 705, 517)),), _FR, "tests/test_images/biden.jpg"),
    Photo("32bit.png", "44dca895a7d635a4aedddd91a4f37af9a8a5b44e66154282a24645a757b5f627",
          (Face("obama", (176, 284, 448, 555)), Face(None, (575, 440, 626, 620))), _FR,
          "tests/test_images/32bit.png"),
    Photo("astronaut.png", "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
          (Face("collins", (165, 73, 263, 171)),), _SK, "skimage/data/astronaut.png"),
    Photo("grace_hopper.jpg", "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130",
          (Face("hopper", (187, 145, 357, 315)),), _MPL,
          "mpl-data/sample_data/grace_hopper.jpg"),
]}

# The photos a clip is cut from (32bit.png is obama2.jpg with an alpha channel:
# kept for the 4-channel input test, not used as a separate shot).
CLIP_PHOTOS = ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg", "astronaut.png",
               "grace_hopper.jpg")


def _sha256(path: pathlib.Path) -> str:
  return hashlib.sha256(path.read_bytes()).hexdigest()


def _installed(name: str) -> pathlib.Path | None:
  """The photo inside an installed package, found without importing it."""
  import importlib.util
  for pkg, sub in (("skimage", "data"), ("matplotlib", "mpl-data/sample_data")):
    spec = importlib.util.find_spec(pkg)
    for loc in (spec.submodule_search_locations or []) if spec else []:
      p = pathlib.Path(loc) / sub / name
      if p.is_file():
        return p
  return None


def search_dirs() -> list[pathlib.Path]:
  dirs = [pathlib.Path(os.environ[ENV_VAR])] if os.environ.get(ENV_VAR) else []
  return dirs + [REPO_CACHE]


def locate(name: str) -> pathlib.Path | None:
  """Path of photo ``name`` whose bytes match its SHA-256, or None."""
  want = PHOTOS[name].sha256
  candidates = [d / name for d in search_dirs()] + [_installed(name)]
  for p in candidates:
    if p is not None and p.is_file() and _sha256(p) == want:
      return p
  return None


def missing_reason(names=CLIP_PHOTOS) -> str | None:
  """None when every photo in ``names`` is found; else a sentence naming the
  missing ones and the command that fetches them."""
  missing = [n for n in names if locate(n) is None]
  if not missing:
    return None
  return (f"real test photos not found: {missing} (looked in "
          f"{[str(d) for d in search_dirs()]} and installed packages); fetch them from "
          f"the package registry with `make photos` (python -m data_prep.realphoto_sources "
          f"--fetch {REPO_CACHE})")


def load(name: str) -> np.ndarray:
  """uint8[H, W, C] photo as stored (RGB, or RGBA for 32bit.png). Raises
  FileNotFoundError with ``missing_reason``."""
  p = locate(name)
  if p is None:
    raise FileNotFoundError(missing_reason([name]))
  img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
  if img is None:
    raise ValueError(f"cannot decode photo {p}")
  return cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA if img.shape[2] == 4 else cv2.COLOR_BGR2RGB)


def fetch(out_dir: str | os.PathLike = REPO_CACHE, quiet: bool = True) -> list[str]:
  """Downloads the packages (``pip download``, no dependencies, no build) and
  extracts the photos into ``out_dir``; returns the names now there. Photos
  already present with the right SHA-256 are not fetched again."""
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  need: dict[str, list[Photo]] = {}
  for p in PHOTOS.values():
    if not ((out / p.name).is_file() and _sha256(out / p.name) == p.sha256):
      need.setdefault(p.package, []).append(p)
  for package, photos in need.items():
    with tempfile.TemporaryDirectory() as tmp:
      name = package.split("==")[0]
      binary = ["--no-binary", name] if package == _FR else ["--only-binary", ":all:"]
      subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", *binary,
                      "--disable-pip-version-check", *(["-q"] if quiet else []),
                      "-d", tmp, package], check=True)
      (archive,) = list(pathlib.Path(tmp).iterdir())
      for photo in photos:
        (out / photo.name).write_bytes(_read_member(archive, photo.member))
        if _sha256(out / photo.name) != photo.sha256:
          raise RuntimeError(f"{photo.name} from {archive.name}: SHA-256 differs from the "
                             "one its face boxes were made for")
  return sorted(n for n in PHOTOS if (out / n).is_file())


def _read_member(archive: pathlib.Path, member: str) -> bytes:
  if archive.suffix == ".whl":
    with zipfile.ZipFile(archive) as z:
      (name,) = [n for n in z.namelist() if n.endswith(member)]
      return z.read(name)
  with tarfile.open(archive) as t:
    (info,) = [m for m in t.getmembers() if m.name.endswith(member)]
    return t.extractfile(info).read()


if __name__ == "__main__":
  import argparse
  ap = argparse.ArgumentParser(description="fetch the real test photos from the package registry")
  ap.add_argument("--fetch", metavar="DIR", default=str(REPO_CACHE))
  args = ap.parse_args()
  print("photos in", args.fetch, ":", fetch(args.fetch))
