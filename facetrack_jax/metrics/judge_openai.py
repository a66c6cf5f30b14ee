"""A language-model judge for AutoDQ / TEM (and the VideoChatGPT scores) at
any OpenAI-compatible chat-completions endpoint.

Configuration (arguments first, then the environment, then the default):

============  ===========================  ==================================
argument      environment                  default
============  ===========================  ==================================
base_url      ``OPENAI_BASE_URL``          ``https://api.openai.com/v1``
model         ``FACETRACK_JUDGE_MODEL``    ``gpt-4o-mini``
api_key_env   (names the variable)         ``OPENAI_API_KEY``
cache_dir     ``FACETRACK_JUDGE_CACHE``    ``~/.cache/facetrack_jax/judge``
============  ===========================  ==================================

With no key the request goes without ``Authorization`` (local servers such
as vLLM or Ollama). With a key, a plain ``http://`` base URL must be a
loopback host (``localhost``, 127.0.0.0/8, ::1) unless
``allow_insecure_http=True``; a redirect to another origin goes without the
key (``openai_client``). ``score --judge openai --base-url ... --model ...
[--allow-insecure-http]`` passes the same settings.

Prompts: our wording, modelled on Tarsier's AutoDQ prompts (bytedance/
tarsier ``evaluation/metrics/evaluate_dream_gpt.py``), adapted to facial
captions:

* extraction -- ≤ 10 atomic facial/head motion events, each a short
  sentence with the person as subject (pronouns resolved), no static
  appearance, in **narrative order** (TEM needs it) and without time words
  (the list order carries time). One request per caption; ``{"events":
  [...]}``; more than 10 are cut to the first 10.
* relation -- Tarsier's three classes for a numbered list of hypothesis
  events against one premise, answered ``{"relations": [{"id", "reason",
  "relation"}]}``. The premise is a caption (AutoDQ) or a single event (TEM):
  a text this judge was given as a caption is a caption, a text it extracted
  as an event is an event (an ``Event`` object too), anything else is read
  as a caption. Pairs are grouped by premise, ``batch_size`` hypotheses per
  request.

Every judgement (one caption's events, one pair's relation, one VideoChatGPT
grade) is cached on disk under ``sha256(base_url, model, prompt version,
task, input)`` (:class:`~facetrack_jax.metrics.openai_client.DiskCache`,
``judgements.jsonl`` in the cache folder), so scoring again asks nothing.
Requests, retries, repair and concurrency: ``openai_client``.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Callable, Sequence
from typing import Any

from facetrack_jax.events import Event
from facetrack_jax.metrics import videochatgpt as vcg
from facetrack_jax.metrics.judge import MAX_EVENTS, RELATIONS, EventItem, Relation
from facetrack_jax.metrics.openai_client import ChatClient, DiskCache, repair_json

PROMPT_VERSION = "autodq-facial-v1"  # bump when a prompt below changes
DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_CACHE_DIR = "~/.cache/facetrack_jax/judge"

_EXTRACT = """Below is a description of a video clip that shows the face of one person, the main character.

Video description:
{caption}

Extract at most {max_events} key events from the video description above. Requirements:
- An event is a movement or a change of the face or head: a change of expression; a movement of the eyebrows, \
eyes, gaze, mouth, lips or head; blinking; speaking. A facial state the description reports as part of what \
happens (e.g. "her mouth is wide open") counts as an event.
- Static appearance is NOT an event: age, gender, hair, skin, face shape, wrinkles, make-up, clothing, \
accessories, background. A statement that nothing changes is not an event. Camera motions and scene cuts are \
not events.
- Every event is one brief sentence of at most 10 words with a subject and a predicate. The subject is the \
person ("the man", "the woman", "the girl", ...): replace pronouns by the noun they refer to.
- Every event is atomic: it cannot be split into several events. Do not repeat an event unless it happens \
again later.
- Keep the narrative order: list the events in the order in which the description tells them. Leave out time \
phrases such as "at the beginning" or "then"; the order of the list carries the time.

Answer with a JSON object of the form {{"events": ["event 1", "event 2", ...]}} ({{"events": []}} when there is \
no event). Do not add any other text."""

_RELATE_CAPTION = """Given a description of a video and a list of events, classify the relationship between \
the description and each event into one of three classes: entailment, neutral, contradiction.
- "entailment": the description entails the event (it says that the event happens, possibly in other words or \
in more detail).
- "contradiction": some detail in the description contradicts the event (for example the opposite movement, or \
the opposite direction, of the same part of the face or head).
- "neutral": neither "entailment" nor "contradiction".
The description and the events are about the same person. Judge what happens, not when it happens."""

_RELATE_EVENT = """Given a premise event from a video and a list of events, classify for each event whether \
the premise entails it, into one of three classes: entailment, neutral, contradiction.
- "entailment": the premise describes the same movement or change as the event; the event may be less specific \
(e.g. "the man turns his head" is entailed by "the man turns his head to the left").
- "contradiction": the premise and the event cannot both be true (for example the opposite movement, or the \
opposite direction, of the same part of the face or head).
- "neutral": anything else, including an event that is more specific than the premise.
The premise and the events are about the same person. Judge what happens, not when it happens."""

_RELATE_TAIL = """{header}:
{premise}

Events (JSON):
{events}

Answer with a JSON object of the form {{"relations": [{{"id": 1, "reason": "a short reason", "relation": \
"entailment"}}, ...]}} holding one entry per event, with the event's id, in the order given. Do not add any \
other text."""

PREMISE_KINDS = {"caption": (_RELATE_CAPTION, "Video description"), "event": (_RELATE_EVENT, "Premise event")}


def extraction_messages(caption: str) -> list[dict]:
  """Chat messages asking for the events of ``caption``."""
  return [{"role": "user", "content": _EXTRACT.format(caption=caption, max_events=MAX_EVENTS)}]


def relation_messages(premise: str, kind: str, hypotheses: Sequence[str]) -> list[dict]:
  """Chat messages asking the relation of each hypothesis event to the
  premise (``kind``: "caption" or "event")."""
  rules, header = PREMISE_KINDS[kind]
  events = json.dumps([{"id": k + 1, "event": h} for k, h in enumerate(hypotheses)], ensure_ascii=False)
  return [{"role": "user", "content": rules + "\n\n" + _RELATE_TAIL.format(header=header, premise=premise,
                                                                           events=events)}]


def parse_events(content: str) -> list[str]:
  """Event sentences of an extraction answer (≤ MAX_EVENTS, order kept)."""
  data = repair_json(content)
  events = data.get("events") if isinstance(data, dict) else data
  if not isinstance(events, list):
    raise ValueError(f'expected {{"events": [...]}}, got {str(data)[:80]}')
  out = []
  for e in events:
    if isinstance(e, dict) and isinstance(e.get("event"), str):
      e = e["event"]
    if not isinstance(e, str):
      raise ValueError(f"event {str(e)[:60]} is not a string")
    e = " ".join(e.split())
    if e:
      out.append(e)
  return out[:MAX_EVENTS]


def parse_relations(content: str, n: int) -> list[Relation]:
  """The n relations of a relation answer, in the order of the events asked."""
  data = repair_json(content)
  rows = data if isinstance(data, list) else (data.get("relations", data.get("events"))
                                              if isinstance(data, dict) else None)
  if not isinstance(rows, list):
    raise ValueError(f'expected {{"relations": [...]}}, got {str(data)[:80]}')
  if len(rows) != n:
    raise ValueError(f"{len(rows)} relations for {n} events")
  out: list[Any] = [None] * n
  for k, row in enumerate(rows):
    if not isinstance(row, dict):
      raise ValueError(f"relation entry {str(row)[:60]} is not an object")
    label = str(row.get("relation", row.get("relationship", ""))).strip().strip(".\"'").lower()
    if label not in RELATIONS:
      raise ValueError(f"relation {label!r} is not one of {RELATIONS}")
    try:
      idx = int(row.get("id", k + 1))
    except (TypeError, ValueError):
      raise ValueError(f"relation id {row.get('id')!r} is not a number") from None
    if not 1 <= idx <= n or out[idx - 1] is not None:
      raise ValueError(f"relation id {idx} is out of range or repeated (1..{n})")
    out[idx - 1] = label
  return out


def _text(item: EventItem) -> str:
  if isinstance(item, Event):
    return " ".join(x.replace("_", " ") for x in (item.part, item.action, item.direction) if x)
  if not isinstance(item, str):
    raise TypeError(f"judge items must be str or Event, got {type(item).__name__}")
  return item


class OpenAIJudge:
  """AutoDQ / TEM judge at an OpenAI-compatible endpoint (module docstring).

  Args beyond the configuration table: ``concurrency`` (requests in flight),
  ``batch_size`` (hypotheses per relation request), ``progress`` (tqdm bars),
  ``client_kwargs`` for :class:`ChatClient` (timeout, max_attempts, backoff,
  max_wait, temperature, max_tokens, sleep, allow_insecure_http).
  """

  def __init__(self, model: str | None = None, base_url: str | None = None, *, api_key: str | None = None,
               api_key_env: str = "OPENAI_API_KEY", cache_dir: str | os.PathLike | None = None,
               concurrency: int = 8, batch_size: int = 20, progress: bool = True, **client_kwargs: Any):
    model = model or os.environ.get("FACETRACK_JUDGE_MODEL") or DEFAULT_MODEL
    base_url = base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
    if api_key is None:
      api_key = os.environ.get(api_key_env) or None
    cache_dir = cache_dir or os.environ.get("FACETRACK_JUDGE_CACHE") or DEFAULT_CACHE_DIR
    if batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    self.client = ChatClient(base_url, model, api_key, concurrency=concurrency,
                             key_hint=f"the key in ${api_key_env}", **client_kwargs)
    self.cache = DiskCache(pathlib.Path(cache_dir).expanduser() / "judgements.jsonl")
    self.name = f"openai:{model}"
    self.batch_size, self.progress = batch_size, progress
    self._captions: set[str] = set()
    self._events: set[str] = set()

  def _key(self, task: str, version: str, *payload: Any) -> str:
    return DiskCache.key(self.client.base_url, self.client.model, version, task, *payload)

  def _cached_map(self, task: str, version: str, payloads: Sequence[tuple], ask: Callable[..., Any]) -> list:
    """``ask(*payload)`` for each payload, from the cache where it is there."""
    keys = [self._key(task, version, *p) for p in payloads]
    todo = {k: p for k, p in zip(keys, payloads) if k not in self.cache}

    def run(item):
      key, payload = item
      self.cache.put(key, ask(*payload), task)

    self.client.map(run, list(todo.items()), desc=f"{self.name} {task}", progress=self.progress)
    return [self.cache[k] for k in keys]

  def extract_events(self, captions: Sequence[str]) -> list[list[EventItem]]:
    """≤ MAX_EVENTS event sentences per caption, in narrative order."""
    for c in captions:
      if not isinstance(c, str):
        raise TypeError(f"caption must be a str, got {type(c).__name__}")
    values = self._cached_map(
        "extract", PROMPT_VERSION, [(c,) for c in captions],
        lambda c: self.client.ask(extraction_messages(c), parse_events, what=f"event extraction of caption {c[:80]!r}"))
    self._captions.update(captions)
    for events in values:
      self._events.update(events)
    return [list(v) for v in values]

  def _kind(self, premise: EventItem) -> str:
    if isinstance(premise, Event):
      return "event"
    return "event" if premise in self._events and premise not in self._captions else "caption"

  def relations(self, pairs: Sequence[tuple[EventItem, EventItem | str]]) -> list[Relation]:
    """Relation of each (event, premise) pair (module docstring)."""
    texts = [(_text(h), _text(p), self._kind(p)) for h, p in pairs]
    keys = [self._key("relation", PROMPT_VERSION, kind, p, h) for h, p, kind in texts]
    groups: dict[tuple[str, str], dict[str, None]] = {}
    for (h, p, kind), key in zip(texts, keys):
      if key not in self.cache:
        groups.setdefault((kind, p), {})[h] = None
    requests = [(kind, p, list(hs)[k:k + self.batch_size])
                for (kind, p), hs in groups.items() for k in range(0, len(hs), self.batch_size)]

    def run(request):
      kind, premise, hyps = request
      rels = self.client.ask(relation_messages(premise, kind, hyps), lambda c: parse_relations(c, len(hyps)),
                             what=f"relations of {len(hyps)} events to the {kind} {premise[:80]!r}")
      for h, r in zip(hyps, rels):
        self.cache.put(self._key("relation", PROMPT_VERSION, kind, premise, h), r, "relation")

    self.client.map(run, requests, desc=f"{self.name} relations", progress=self.progress)
    return [self.cache[k] for k in keys]

  def videochatgpt_scores(self, pairs: Sequence[tuple[str, str]],
                          question: str = vcg.QUESTION) -> list[dict[str, float]]:
    """{criterion: 0..5} (``videochatgpt.CRITERIA``) per (prediction, reference)."""
    payloads = [(c, question, ref, pred) for pred, ref in pairs for c in vcg.CRITERIA]
    values = self._cached_map(
        "videochatgpt", vcg.PROMPT_VERSION, payloads,
        lambda c, q, ref, pred: self.client.ask(vcg.messages(c, q, ref, pred), vcg.parse_score,
                                                what=f"VideoChatGPT {c} score of prediction {pred[:80]!r}"))
    n = len(vcg.CRITERIA)
    return [dict(zip(vcg.CRITERIA, values[k:k + n])) for k in range(0, len(values), n)]
