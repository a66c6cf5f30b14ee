"""FEC-Bench-format annotation files: load, validate per entry, keep the good.

Format (the one FEC-Bench publishes, see ``../shared/fecbench``): a JSON list
of ``{"id": str, "video": "<SOURCE>/<relative path>.mp4", "caption": str}``.
The video path is relative to a *video root* the user supplies; ``source`` is
its first path component ("DFEW", "CAER_mp4", ..., "synthetic").

An annotation file may come from anyone, so its names are kept inside the
video root (``unsafe_video_path``, ``unsafe_id``): a video path that is
absolute (``/x.mp4``, ``C:/x.mp4``, ``//host/x.mp4``) or has a ``..``
component is rejected, and so is an id that cannot be a file name as it
stands (ids name ``<video root>/ground_truth/<id>.json`` and the contact
sheet ``<id>.png``): one holding ``/``, ``\\`` or a control character, or
``.`` / ``..``. Symbolic links *inside* the video root are followed: they are
the user's own (e.g. ``<root>/DFEW -> /mnt/datasets/DFEW``), not the file's.

A bad entry never costs the good ones: each is turned into a
``ClipError(stage="annotation", ...)`` and loading goes on. Only a file that
cannot be read at all (missing, not JSON, not a list) raises
``AnnotationFileError``.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
from typing import Any, Iterable

from data_prep.errors import ClipError


class AnnotationFileError(ValueError):
  """The annotation file as a whole is unusable (named in the message)."""


@dataclasses.dataclass(frozen=True)
class Entry:
  """One usable annotation: a clip id, its video path (as written in the
  file, relative to the video root) and its caption."""
  id: str
  video: str
  caption: str

  @property
  def source(self) -> str:
    return source_of(self.video)


def source_of(video: str) -> str:
  """First path component of an annotation's video path: "DFEW/videos/1.mp4"
  -> "DFEW". Both "/" and "\\" separate components."""
  parts = [p for p in video.replace("\\", "/").split("/") if p not in ("", ".")]
  return parts[0] if parts else ""


def unsafe_video_path(video: str) -> str | None:
  """Why ``video`` (an annotation's path, meant relative to the video root)
  could name a file outside the root, or None when it cannot: absolute
  (``/``, ``\\``, a drive letter) or a ``..`` component ("/" and "\\" both
  separate components, as ``source_of`` reads them)."""
  if "\0" in video:
    return "holds a NUL character"
  norm = video.replace("\\", "/")
  if norm.startswith("/") or re.match(r"[A-Za-z]:", norm):
    return "is an absolute path; it must be relative to the video root"
  if ".." in norm.split("/"):
    return "has a '..' component: it would leave the video root"
  return None


def unsafe_id(clip_id: str) -> str | None:
  """Why ``clip_id`` cannot be used as a file name (``ground_truth/<id>.json``,
  ``<id>.png``), or None."""
  if clip_id.strip() in (".", ".."):
    return f"{clip_id!r} is not a file name"
  if "/" in clip_id or "\\" in clip_id:
    return "holds a path separator ('/' or '\\'); ids name files"
  if any(ord(c) < 32 or ord(c) == 127 for c in clip_id):
    return "holds a control character; ids name files"
  return None


def _entry_error(reason: str, *, clip_id: str | None, where: str) -> ClipError:
  return ClipError("annotation", reason, clip_id=clip_id, path=where)


def parse_entries(records: Iterable[Any], *, origin: str,
                  seen: dict[str, str] | None = None
                  ) -> tuple[list[Entry], list[ClipError]]:
  """Validates decoded annotation records one by one.

  Args:
    records: the decoded JSON list.
    origin: a label for messages (the annotation file path); an entry with no
      video is reported at ``"<origin>[<index>]"``.
    seen: ids already taken (id -> label of where), shared across files so an
      id used in two splits is caught; updated in place.

  Returns:
    ``(entries, errors)``: the good entries in file order and one ClipError
    (stage "annotation") per bad entry: not an object, missing/invalid id,
    missing/empty video, a video path or id that escapes the video root
    (``unsafe_video_path``, ``unsafe_id``), missing/empty caption, duplicate
    id (the first occurrence is kept).
  """
  seen = {} if seen is None else seen
  entries, errors = [], []
  for index, rec in enumerate(records):
    where = f"{origin}[{index}]"
    if not isinstance(rec, dict):
      errors.append(_entry_error(
          f"entry #{index} is not a JSON object (got {type(rec).__name__})",
          clip_id=None, where=where))
      continue
    raw_id = rec.get("id")
    clip_id = str(raw_id) if isinstance(raw_id, (str, int)) and not isinstance(
        raw_id, bool) else None
    video = rec.get("video")
    if isinstance(video, str) and video.strip():
      where = video
    if clip_id is None or not clip_id.strip():
      reason = ("missing 'id'" if raw_id is None
                else f"'id' must be a non-empty string, got {raw_id!r}")
      errors.append(_entry_error(f"entry #{index}: {reason}", clip_id=None, where=where))
      continue
    if not isinstance(video, str) or not video.strip():
      reason = "missing 'video'" if video is None else f"empty or invalid 'video' ({video!r})"
      errors.append(_entry_error(reason, clip_id=clip_id, where=where))
      continue
    if (why := unsafe_id(clip_id)) is not None:
      errors.append(_entry_error(f"unsafe 'id' {clip_id!r}: {why}", clip_id=clip_id,
                                 where=where))
      continue
    if (why := unsafe_video_path(video.strip())) is not None:
      errors.append(_entry_error(f"unsafe 'video' {video.strip()!r}: {why}",
                                 clip_id=clip_id, where=where))
      continue
    caption = rec.get("caption")
    if not isinstance(caption, str) or not caption.strip():
      reason = ("missing 'caption'" if caption is None
                else f"empty or invalid 'caption' ({caption!r})")
      errors.append(_entry_error(reason, clip_id=clip_id, where=where))
      continue
    if clip_id in seen:
      errors.append(_entry_error(f"duplicate id (first used in {seen[clip_id]})",
                                 clip_id=clip_id, where=where))
      continue
    seen[clip_id] = origin
    entries.append(Entry(id=clip_id, video=video.strip(), caption=caption.strip()))
  return entries, errors


def load_annotations(path: str | pathlib.Path, *, seen: dict[str, str] | None = None
                     ) -> tuple[list[Entry], list[ClipError]]:
  """Reads a FEC-Bench-format JSON file; see ``parse_entries``.

  Raises:
    AnnotationFileError: the file is missing, unreadable, not JSON, or its top
      level is not a list.
  """
  path = pathlib.Path(path)
  try:
    text = path.read_text(encoding="utf-8")
  except OSError as e:
    raise AnnotationFileError(f"annotation file {str(path)!r}: cannot read: {e}") from e
  try:
    records = json.loads(text)
  except json.JSONDecodeError as e:
    raise AnnotationFileError(f"annotation file {str(path)!r}: not valid JSON: {e}") from e
  if not isinstance(records, list):
    raise AnnotationFileError(
        f"annotation file {str(path)!r}: expected a JSON list of "
        f"{{'id', 'video', 'caption'}} objects, got a {type(records).__name__}")
  return parse_entries(records, origin=str(path), seen=seen)
