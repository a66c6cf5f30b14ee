"""A local GCS emulator for tests (``gcp-storage-emulator``, requirements-test.txt):
started on 127.0.0.1 on a free port, in memory, with one bucket; stopped at
the end. :func:`facetrack_jax.paths.emulator_env` names it to every layer
(gcsfs, tensorstore, ArrayRecord's reader, tensorboardX).

One fidelity fix (``python -m tests.gcs_emulator PORT`` runs the patched
server): real GCS answers a media download with ``x-goog-generation`` (and
``x-goog-metageneration``) headers; the emulator (2026.7.19) sends neither,
and tensorstore's GCS driver — orbax's OCDBT checkpoints — then fails every
conditional read with "Malformed StorageGeneration" (measured: the second
checkpoint's manifest read).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import socket
import subprocess
import sys
import time

from facetrack_jax import paths

BUCKET = "facetrack-test"


@contextlib.contextmanager
def emulator(log_path, start_timeout: float = 30.0):
  """Yields ``(url, env)``: the emulator's URL and the variables that point
  every layer at it. Also sets them in this process while it runs."""
  import pytest
  pytest.importorskip("gcp_storage_emulator")
  pytest.importorskip("gcsfs")
  from tests.train_helpers import free_port
  port = free_port()
  log = open(log_path, "w")
  root = pathlib.Path(__file__).resolve().parents[1]
  proc = subprocess.Popen([sys.executable, "-m", "tests.gcs_emulator", str(port)],
                          stdout=log, stderr=subprocess.STDOUT, cwd=root)
  url = f"http://127.0.0.1:{port}"
  env = paths.emulator_env(url)
  old = {k: os.environ.get(k) for k in env}
  try:
    t0 = time.time()
    while True:
      try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        break
      except OSError:
        if proc.poll() is not None or time.time() - t0 > start_timeout:
          raise RuntimeError(f"GCS emulator did not start in {start_timeout} s "
                             f"(exit {proc.poll()}); see {log_path}")
        time.sleep(0.1)
    os.environ.update(env)
    yield url, env
  finally:
    for k, v in old.items():
      if v is None:
        os.environ.pop(k, None)
      else:
        os.environ[k] = v
    proc.terminate()
    try:
      proc.wait(10)
    except subprocess.TimeoutExpired:
      proc.kill()
      proc.wait(10)
    log.close()


def upload_tree(src, dst) -> None:
  """Copies the local directory ``src`` to ``dst`` (a gs:// epath)."""
  from etils import epath
  src, dst = pathlib.Path(src), epath.Path(dst)
  for f in sorted(src.rglob("*")):
    if f.is_file():
      (dst / f.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
      (dst / f.relative_to(src)).write_bytes(f.read_bytes())


def _serve(port: int) -> None:
  """The emulator with download responses carrying the object's generation."""
  from gcp_storage_emulator.handlers import objects

  download = objects.download

  def download_with_generation(request, response, storage, *args, **kwargs):
    try:
      obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
      response["x-goog-generation"] = str(obj["generation"])
      response["x-goog-metageneration"] = str(obj["metageneration"])
    except Exception:  # noqa: BLE001 -- absent: download answers 404 itself
      pass
    return download(request, response, storage, *args, **kwargs)

  objects.download = download_with_generation   # before server builds its routes
  from gcp_storage_emulator.__main__ import main
  main(["start", "--host", "127.0.0.1", "--port", str(port), "--in-memory",
        "--default-bucket", BUCKET])


if __name__ == "__main__":
  _serve(int(sys.argv[1]))
