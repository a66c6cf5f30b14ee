"""Worker processes for the build that survive a worker's death.

``multiprocessing.Pool`` waits forever for the result of a worker that was
killed (a segfault in a decoder, the OOM killer's SIGKILL), and
``concurrent.futures.ProcessPoolExecutor`` fails every pending clip with
``BrokenProcessPool`` without saying which one was running. Here each worker
holds at most one clip at a time, so the pool always knows which clip a dead
worker had: that clip becomes a failure record (stage ``"worker"``, reason
``"worker died: signal SIGSEGV"`` / ``"... SIGKILL (killed: out of memory?)"``
/ ``"... exit status 3"``), a fresh worker takes the dead one's place, and
every other clip goes on.

  pool = ClipPool(run, workers=4)      # run(job) -> ClipOutcome, picklable
  for outcome in pool.imap(jobs): ...  # in the order of ``jobs``
  pool.close()

Workers are started with ``spawn`` and set their thread share
(``clip_job.init_worker``) before taking clips. A worker that dies before it
is ready (a broken environment, not a clip) raises ``WorkerStartError``.
"""

from __future__ import annotations

import collections
import multiprocessing
import multiprocessing.connection
import signal
import traceback
from typing import Callable, Iterable, Iterator

from data_prep.clip_job import ClipJob, ClipOutcome, error_record, init_worker
from data_prep.errors import ClipError

_READY = "ready"


class WorkerStartError(RuntimeError):
  """A build worker died before it could take a clip."""


def death_cause(exitcode: int | None) -> str:
  """"signal SIGSEGV", "signal SIGKILL (killed: out of memory?)", "exit status 3"."""
  if exitcode is None:
    return "unknown cause"
  if exitcode < 0:
    try:
      name = signal.Signals(-exitcode).name
    except ValueError:
      name = str(-exitcode)
    return f"signal {name}" + (" (killed: out of memory?)" if -exitcode == signal.SIGKILL else "")
  return f"exit status {exitcode}"


def _worker_main(conn, run: Callable[[ClipJob], ClipOutcome], threads: int) -> None:
  """A worker: ``(key, job)`` in, ``(key, outcome)`` out, until ``None``."""
  init_worker(threads)
  conn.send(_READY)
  while (msg := conn.recv()) is not None:
    key, job = msg
    try:
      outcome = run(job)
    except Exception as e:  # pylint: disable=broad-except  # run_job should not raise
      outcome = ClipOutcome(error_record(job.split, ClipError(
          "worker", f"{type(e).__name__}: {e} ({traceback.format_exc(limit=-1).strip()})",
          clip_id=job.entry.id, path=job.path)))
    conn.send((key, outcome))


class _Worker:
  def __init__(self, ctx, run, threads: int):
    self.conn, child = ctx.Pipe()
    self.process = ctx.Process(target=_worker_main, args=(child, run, threads), daemon=True)
    self.process.start()
    child.close()
    self.ready = False   # set when it has started (clip_job.init_worker)
    self.alive = True    # False once a send to it failed
    self.job: tuple[int, ClipJob] | None = None   # the clip it holds


class ClipPool:
  """``workers`` processes mapping ``run`` over clips (module docstring).
  ``deaths`` counts the workers that died holding a clip."""

  def __init__(self, run: Callable[[ClipJob], ClipOutcome], workers: int, threads: int = 1):
    if workers < 1:
      raise ValueError(f"workers must be >= 1, got {workers}")
    self._ctx = multiprocessing.get_context("spawn")
    self._run, self._threads = run, threads
    self._workers = [_Worker(self._ctx, run, threads) for _ in range(workers)]
    self._pending: collections.deque[tuple[int, ClipJob]] = collections.deque()
    self._done: dict[int, ClipOutcome] = {}
    self._next_key = 0
    self.deaths = 0

  def submit(self, job: ClipJob) -> int:
    """Queues ``job``; returns the key of its outcome (``result``)."""
    key, self._next_key = self._next_key, self._next_key + 1
    self._pending.append((key, job))
    self._dispatch()
    return key

  def result(self, key: int) -> ClipOutcome:
    """The outcome of a submitted job, waiting for it (others are kept)."""
    while key not in self._done:
      self._pump()
    return self._done.pop(key)

  def imap(self, jobs: Iterable[ClipJob], ahead: int | None = None) -> Iterator[ClipOutcome]:
    """Outcomes of ``jobs`` in order; at most ``ahead`` (default: twice the
    workers) submitted but not yet yielded, so results wait in memory only
    for a slow clip ahead of them."""
    ahead = ahead or 2 * len(self._workers)
    jobs, keys = iter(jobs), collections.deque()
    for job in jobs:
      keys.append(self.submit(job))
      if len(keys) >= ahead:
        yield self.result(keys.popleft())
    while keys:
      yield self.result(keys.popleft())

  def close(self) -> None:
    """Stops every worker (clips still running are abandoned)."""
    for w in self._workers:
      if w.process.is_alive():
        w.process.terminate()
    for w in self._workers:
      w.process.join(timeout=10)
      w.conn.close()
    self._workers = []

  def __enter__(self) -> "ClipPool":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  # --- internals ---

  def _dispatch(self) -> None:
    for w in self._workers:
      if not self._pending:
        return
      if w.ready and w.alive and w.job is None:
        w.job = self._pending.popleft()
        try:
          w.conn.send(w.job)
        except OSError:   # it died just now: the clip goes to another worker
          self._pending.appendleft(w.job)
          w.job, w.alive = None, False

  def _pump(self) -> None:
    """Waits for a message or a death; handles what is ready."""
    if not self._workers:
      raise RuntimeError("the clip pool is closed")
    by_handle = {}
    for w in self._workers:
      by_handle[w.conn] = w
      by_handle[w.process.sentinel] = w
    for handle in multiprocessing.connection.wait(list(by_handle)):
      w = by_handle[handle]
      if w not in self._workers:
        continue   # replaced while handling an earlier handle of this round
      if handle is w.conn and self._receive(w):
        continue
      # the process exited (or its pipe closed): first what it sent before
      while w.conn.poll() and self._receive(w):
        pass
      self._replace(w)
    self._dispatch()

  def _receive(self, w: _Worker) -> bool:
    """Reads one message of ``w``; False when its pipe is closed (it died)."""
    try:
      msg = w.conn.recv()
    except (EOFError, OSError):
      return False
    if msg == _READY:
      w.ready = True
    else:
      key, outcome = msg
      self._done[key] = outcome
      w.job = None
    return True

  def _replace(self, w: _Worker) -> None:
    """``w`` is dead: its clip (if any) fails with the cause, a new worker starts."""
    w.process.join(timeout=10)
    if w.process.is_alive():   # pipe closed but still running: make sure
      w.process.kill()
      w.process.join()
    cause = death_cause(w.process.exitcode)
    w.conn.close()
    if not w.ready:
      self.close()
      raise WorkerStartError(f"a build worker died before taking a clip ({cause}); "
                             "check that `python -c 'import data_prep.pipeline'` works")
    if w.job is not None:
      key, job = w.job
      self.deaths += 1
      self._done[key] = ClipOutcome(error_record(job.split, ClipError(
          "worker", f"worker died: {cause}", clip_id=job.entry.id, path=job.path)))
    self._workers[self._workers.index(w)] = _Worker(self._ctx, self._run, self._threads)
