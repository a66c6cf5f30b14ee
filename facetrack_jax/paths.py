"""Paths: local or ``gs://`` (any ``etils.epath`` URI), one way everywhere.

Workdirs, checkpoints, TensorBoard, metrics.jsonl, evaluation reports, the
tokenizer, the TFDS ``data_dir`` and safetensors imports all go through
:func:`resolve`, which makes a local path absolute and leaves a URI as is
(``os.path.abspath("gs://b/run")`` would give ``/cwd/gs:/b/run``).

Which layer reads ``gs://`` how (and how a local GCS emulator is named to it;
the test ``tests/test_gcs.py`` starts ``gcp-storage-emulator``):

=====================  ==========================  ================================
layer                  client                      emulator setting
=====================  ==========================  ================================
epath (our files,      fsspec ``gcsfs`` (no TF)    ``STORAGE_EMULATOR_HOST``
TFDS metadata, tokens)
orbax checkpoints      tensorstore (C++)           ``TENSORSTORE_GCS_HTTP_URL``
ArrayRecord data files google-cloud-cpp (C++)      ``CLOUD_STORAGE_EMULATOR_ENDPOINT``
TensorBoard            tensorboardX ->             ``STORAGE_EMULATOR_HOST``
                       google-cloud-storage
=====================  ==========================  ================================

On real GCS none is set: each uses Application Default Credentials.
Without its setting, ArrayRecord's reader goes to the real GCS and, with no
credentials, hangs retrying (measured: > 60 s, no error) — so all three must
point at an emulator together (:func:`emulator_env`).

GCS objects cannot be appended to: :class:`JsonlLog` rewrites a remote
``.jsonl`` whole (at most every ``remote_every_s`` seconds and on close)
where a local one is appended to line by line.
"""

from __future__ import annotations

import json
import os
import time

from etils import epath


def is_remote(path) -> bool:
  return "://" in os.fspath(path)


def resolve(path) -> epath.Path:
  """``path`` as an ``epath.Path``: absolute if local, a URI unchanged."""
  s = os.fspath(path)
  return epath.Path(s if is_remote(s) else os.path.abspath(s))


def files_under(path) -> list[epath.Path]:
  """Every file below the directory ``path`` (epath's ``rglob`` refuses gs://)."""
  out = []
  for child in epath.Path(path).iterdir():
    out.extend(files_under(child) if child.is_dir() else [child])
  return out


def emulator_env(url: str) -> dict[str, str]:
  """The variables that send every layer (module docstring) to the GCS
  emulator at ``url`` (``http://127.0.0.1:PORT``)."""
  return {"STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url,
          "CLOUD_STORAGE_EMULATOR_ENDPOINT": url, "GOOGLE_CLOUD_PROJECT": "test"}


def read_jsonl(path) -> list[dict]:
  """All records of a ``.jsonl`` (absent: none; a torn last line is ignored)."""
  p = epath.Path(path)
  if not p.exists():
    return []
  out = []
  for line in p.read_text().splitlines():
    try:
      out.append(json.loads(line))
    except json.JSONDecodeError:
      continue
  return out


class JsonlLog:
  """A ``.jsonl`` file that keeps the records up to ``keep_step`` (by their
  ``"step"``: a resumed run drops those of the run after its checkpoint) and
  then gets one line per :meth:`write`."""

  def __init__(self, path, *, keep_step: int, remote_every_s: float = 30.0):
    self.path = epath.Path(path)
    self.path.parent.mkdir(parents=True, exist_ok=True)
    self._rows = [json.dumps(r) for r in read_jsonl(self.path)
                  if r.get("step", 0) <= keep_step]
    self._remote = is_remote(self.path)
    self._every, self._last = remote_every_s, 0.0
    self._rewrite()
    self._file = None if self._remote else open(self.path, "a")

  def _rewrite(self) -> None:
    text = "".join(r + "\n" for r in self._rows)
    if self._remote:   # an object upload replaces it whole, atomically
      self.path.write_text(text)
    else:
      tmp = self.path.parent / (self.path.name + ".tmp")
      tmp.write_text(text)
      os.replace(tmp, self.path)
    self._last = time.monotonic()

  def write(self, record: dict) -> None:
    line = json.dumps(record)
    if self._file is not None:
      self._file.write(line + "\n")
      self._file.flush()
      return
    self._rows.append(line)
    if time.monotonic() - self._last >= self._every:
      self._rewrite()

  def flush(self) -> None:
    """Makes every record written so far durable (a remote file: rewritten)."""
    if self._remote:
      self._rewrite()

  def close(self) -> None:
    if self._file is not None:
      self._file.close()
      self._file = None
    elif self._remote:
      self._rewrite()
