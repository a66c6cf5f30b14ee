"""HTTP client for an OpenAI-compatible chat-completions endpoint: retries,
bounded concurrency, JSON repair and an on-disk cache of judgements.

Standard library only (``urllib.request`` + a ``concurrent.futures`` thread
pool), so the offline path and CI need no client package.

* :class:`ChatClient` -- ``ask(messages, parse, what)`` POSTs
  ``{base_url}/chat/completions`` (``Authorization: Bearer <key>`` when a key
  is given) and returns ``parse(content)``. Retries, at most ``max_attempts``
  requests in all: HTTP 408/409/425/429/5xx, timeouts and connection errors
  wait ``Retry-After`` when the server sends it (capped at ``max_wait``), else
  ``backoff * 2**(attempt-1)`` (capped, jittered); an answer that ``parse``
  rejects (``ValueError``) is asked again at once, with the rejected answer
  and the reason appended to the conversation. Other HTTP errors (401, 404,
  ...) fail at once. ``map(fn, items)`` runs calls on ``concurrency``
  threads; a semaphore also bounds requests in flight across calls.
  The key is guarded: a client with a key refuses a plain ``http://`` URL
  whose host is not loopback (``InsecureEndpointError``, unless
  ``allow_insecure_http=True``: a network you trust), and a redirect to
  another origin (scheme, host or port) goes without ``Authorization``
  (urllib's ``HTTPRedirectHandler`` copies every header to any host).
* :func:`repair_json` -- the first JSON value of a model's answer: code fences
  and surrounding prose dropped, then trailing commas, single-quoted strings,
  bare keys and Python's True/False/None fixed outside strings.
* :class:`DiskCache` -- JSONL file ``{"k": sha256, "t": task, "v": value}``,
  one line per judgement, appended as soon as it is known (an interrupted run
  resumes; a torn last line is skipped).
"""

from __future__ import annotations

import concurrent.futures as cf
import email.utils
import hashlib
import http.client
import ipaddress
import json
import pathlib
import random
import re
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")
RETRY_STATUS = frozenset({408, 409, 425, 429})  # and every 5xx


class JudgeError(RuntimeError):
  """A judgement that could not be obtained (message names the item)."""


class InsecureEndpointError(ValueError):
  """The API key would go in plain text (``http://``) to a non-loopback host."""


def is_loopback(host: str | None) -> bool:
  """``localhost`` or a loopback address (127.0.0.0/8, ::1)."""
  if not host:
    return False
  if host.lower().rstrip(".") == "localhost":
    return True
  try:
    return ipaddress.ip_address(host).is_loopback
  except ValueError:
    return False


def _origin(url: str) -> tuple[str, str, int | None]:
  parts = urllib.parse.urlsplit(url)
  port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
  return parts.scheme, (parts.hostname or "").lower(), port


class _KeepKeyOnOriginRedirect(urllib.request.HTTPRedirectHandler):
  """urllib's redirects, but ``Authorization`` is dropped when the redirect
  leaves the request's origin (another scheme, host or port)."""

  def redirect_request(self, req, fp, code, msg, headers, newurl):
    new = super().redirect_request(req, fp, code, msg, headers, newurl)
    if new is not None and _origin(new.full_url) != _origin(req.full_url):
      new.remove_header("Authorization")
    return new


class _Transient(Exception):
  def __init__(self, message: str, retry_after: float | None = None):
    super().__init__(message)
    self.retry_after = retry_after


# --------------------------------------------------------------------- JSON --

_FENCE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n?(.*?)(?:```|\Z)", re.S)
_WORDS = {"True": "true", "False": "false", "None": "null"}


def _first_span(s: str) -> str:
  """The first balanced {...} or [...] of ``s`` (strings of either quote
  respected); the rest of ``s`` from its start if it never closes."""
  starts = [i for i in (s.find("{"), s.find("[")) if i >= 0]
  if not starts:
    raise ValueError("no JSON object or array in the answer")
  start = min(starts)
  depth, quote, i = 0, None, start
  while i < len(s):
    c = s[i]
    if quote:
      if c == "\\":
        i += 1
      elif c == quote:
        quote = None
    elif c in "\"'":
      quote = c
    elif c in "{[":
      depth += 1
    elif c in "}]":
      depth -= 1
      if depth == 0:
        return s[start:i + 1]
    i += 1
  return s[start:]


def _normalise(s: str) -> str:
  """Single-quoted strings -> JSON strings, trailing commas dropped, bare
  keys quoted, True/False/None -> true/false/null; strings keep their text."""
  out, quote, i, n = [], None, 0, len(s)
  while i < n:
    c = s[i]
    if quote:
      if c == "\\" and i + 1 < n:
        out.append("'" if s[i + 1] == "'" else s[i:i + 2])  # \' is no JSON escape
        i += 2
        continue
      if c == quote:
        out.append('"')
        quote = None
      elif c == '"':  # inside a single-quoted string
        out.append('\\"')
      elif c == "\n":
        out.append("\\n")
      else:
        out.append(c)
    elif c in "\"'":
      quote = c
      out.append('"')
    elif c == ",":
      j = i + 1
      while j < n and s[j].isspace():
        j += 1
      if j >= n or s[j] not in "}]":
        out.append(c)
    elif c.isalpha():
      j = i
      while j < n and (s[j].isalnum() or s[j] == "_"):
        j += 1
      word, k = s[i:j], j
      while k < n and s[k].isspace():
        k += 1
      out.append(_WORDS.get(word) or (f'"{word}"' if k < n and s[k] == ":" else word))  # bare key
      i = j
      continue
    else:
      out.append(c)
    i += 1
  return "".join(out)


def repair_json(text: str) -> Any:
  """The JSON value in a model's answer, repaired where that is safe.

  Raises ``ValueError`` (with the reason) when no JSON value can be read.
  """
  if not isinstance(text, str):
    raise ValueError(f"answer is {type(text).__name__}, not text")
  s = text.strip()
  fence = _FENCE.search(s)
  if fence:
    s = fence.group(1).strip()
  try:
    return json.loads(s)
  except json.JSONDecodeError:
    pass
  span = _first_span(s)
  for candidate in (span, _normalise(span)):
    try:
      return json.loads(candidate)
    except json.JSONDecodeError as e:
      error = e
  raise ValueError(f"not JSON even after repair ({error.msg} at char {error.pos})")


# -------------------------------------------------------------------- cache --

class DiskCache:
  """Judgements by key, persisted as JSONL at ``path`` (thread-safe)."""

  def __init__(self, path: str | pathlib.Path):
    self.path = pathlib.Path(path).expanduser()
    self.path.parent.mkdir(parents=True, exist_ok=True)
    self._data: dict[str, Any] = {}
    self._lock = threading.Lock()
    skipped = 0
    if self.path.exists():
      for line in self.path.read_text(encoding="utf-8").splitlines():
        try:
          row = json.loads(line)
          self._data[row["k"]] = row["v"]
        except (json.JSONDecodeError, KeyError, TypeError):
          skipped += 1
    if skipped:
      print(f"judge cache {self.path}: skipped {skipped} unreadable lines", file=sys.stderr)

  @staticmethod
  def key(*parts: Any) -> str:
    """sha256 of the JSON of ``parts`` (all must be JSON-serialisable)."""
    blob = json.dumps(parts, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()

  def __contains__(self, key: str) -> bool:
    return key in self._data

  def __getitem__(self, key: str) -> Any:
    return self._data[key]

  def __len__(self) -> int:
    return len(self._data)

  def put(self, key: str, value: Any, task: str = "") -> None:
    line = json.dumps({"k": key, "t": task, "v": value}, ensure_ascii=False) + "\n"
    with self._lock:
      self._data[key] = value
      with open(self.path, "a", encoding="utf-8") as f:
        f.write(line)


# ------------------------------------------------------------------- client --

def _retry_after(value: str | None) -> float | None:
  """Seconds from a Retry-After header (delta-seconds or HTTP date)."""
  if not value:
    return None
  try:
    return max(0.0, float(value))
  except ValueError:
    pass
  try:
    return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
  except (TypeError, ValueError):
    return None


class ChatClient:
  """Chat completions at ``base_url`` with retries (see module docstring)."""

  def __init__(self, base_url: str, model: str, api_key: str | None = None, *, timeout: float = 120.0,
               max_attempts: int = 6, backoff: float = 1.0, max_wait: float = 60.0, concurrency: int = 8,
               temperature: float | None = 0.0, max_tokens: int | None = None,
               sleep: Callable[[float], None] = time.sleep, key_hint: str = "the API key",
               allow_insecure_http: bool = False):
    scheme = urllib.parse.urlsplit(base_url or "").scheme
    if scheme not in ("http", "https"):
      raise ValueError(f"judge base URL must be http(s)://..., got {base_url!r}")
    host = urllib.parse.urlsplit(base_url).hostname
    if scheme == "http" and api_key and not is_loopback(host) and not allow_insecure_http:
      raise InsecureEndpointError(
          f"judge base URL {base_url!r} is plain http:// to {host!r}, not a loopback host: "
          f"{key_hint} would travel unencrypted. Use https://, or pass "
          "allow_insecure_http=True (score: --allow-insecure-http) for a network you trust")
    if not model:
      raise ValueError("judge model name is empty")
    if concurrency < 1 or max_attempts < 1:
      raise ValueError(f"concurrency ({concurrency}) and max_attempts ({max_attempts}) must be >= 1")
    self.base_url, self.model, self.api_key = base_url.rstrip("/"), model, api_key
    self.url = self.base_url + "/chat/completions"
    self.timeout, self.max_attempts, self.backoff, self.max_wait = timeout, max_attempts, backoff, max_wait
    self.concurrency, self.temperature, self.max_tokens = concurrency, temperature, max_tokens
    self.sleep, self.key_hint = sleep, key_hint
    self.requests = 0  # HTTP requests sent (any outcome)
    self._slots = threading.BoundedSemaphore(concurrency)
    self._count_lock = threading.Lock()
    handlers = [urllib.request.ProxyHandler({})] if is_loopback(host) else []
    self._opener = urllib.request.build_opener(*handlers, _KeepKeyOnOriginRedirect())

  def _complete(self, messages: Sequence[dict]) -> str:
    """One request -> the answer's text; _Transient for what may pass."""
    body: dict[str, Any] = {"model": self.model, "messages": list(messages)}
    if self.temperature is not None:  # None: the endpoint's default (models that only take 1)
      body["temperature"] = self.temperature
    if self.max_tokens:
      body["max_tokens"] = self.max_tokens
    headers = {"Content-Type": "application/json"}
    if self.api_key:
      headers["Authorization"] = f"Bearer {self.api_key}"
    req = urllib.request.Request(self.url, data=json.dumps(body).encode("utf-8"), headers=headers, method="POST")
    with self._slots:
      with self._count_lock:
        self.requests += 1
      try:
        with self._opener.open(req, timeout=self.timeout) as resp:
          raw = resp.read()
      except urllib.error.HTTPError as e:
        detail = e.read()[:300].decode("utf-8", "replace")
        if e.code in RETRY_STATUS or e.code >= 500:
          raise _Transient(f"HTTP {e.code}: {detail}", _retry_after(e.headers.get("Retry-After"))) from None
        hint = f" (check {self.key_hint})" if e.code in (401, 403) else ""
        raise JudgeError(f"HTTP {e.code} from {self.url}{hint}: {detail}") from None
      except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as e:
        raise _Transient(f"{type(e).__name__}: {getattr(e, 'reason', e)}") from None
    try:
      content = json.loads(raw)["choices"][0]["message"]["content"]
    except (json.JSONDecodeError, KeyError, IndexError, TypeError):
      raise _Transient(f"not a chat-completions response: {raw[:200]!r}") from None
    if not isinstance(content, str) or not content.strip():
      raise _Transient(f"empty answer: {raw[:200]!r}")
    return content

  def _wait(self, attempt: int, retry_after: float | None) -> float:
    if retry_after is not None:
      return min(retry_after, self.max_wait)
    return min(self.max_wait, self.backoff * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)

  def ask(self, messages: Sequence[dict], parse: Callable[[str], T], what: str) -> T:
    """``parse`` of the answer to ``messages``; JudgeError naming ``what``
    when no usable answer comes within ``max_attempts`` requests."""
    conversation, last = list(messages), "none"
    for attempt in range(1, self.max_attempts + 1):
      try:
        content = self._complete(conversation)
      except _Transient as e:
        last = str(e)
        if attempt < self.max_attempts:
          self.sleep(self._wait(attempt, e.retry_after))
        continue
      except JudgeError as e:
        raise JudgeError(f"{what}: {e}") from None
      try:
        return parse(content)
      except ValueError as e:
        last = f"unusable answer ({e}): {content[:300]!r}"
        conversation = list(messages) + [
            {"role": "assistant", "content": content},
            {"role": "user", "content": f"That answer cannot be used: {e}. Reply again with only the JSON asked for."},
        ]
    raise JudgeError(f"{what}: no usable answer from {self.model} at {self.url} after "
                     f"{self.max_attempts} attempts; last error: {last}")

  def map(self, fn: Callable[[Any], T], items: Sequence[Any], desc: str = "judge",
          progress: bool = True) -> list[T]:
    """``[fn(x) for x in items]`` on ``concurrency`` threads, in order; the
    first error cancels what has not started and is raised."""
    items = list(items)
    if not items:
      return []
    out: list[Any] = [None] * len(items)
    pool = cf.ThreadPoolExecutor(max_workers=min(self.concurrency, len(items)))
    try:
      futures = {pool.submit(fn, x): k for k, x in enumerate(items)}
      with tqdm(total=len(items), desc=desc, disable=not progress, leave=False) as bar:
        for future in cf.as_completed(futures):
          out[futures[future]] = future.result()
          bar.update()
    finally:
      pool.shutdown(wait=True, cancel_futures=True)
    return out
