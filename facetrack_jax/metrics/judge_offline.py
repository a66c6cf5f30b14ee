"""The offline judge: deterministic, no network, rule-based (default judge).

It also reads the static appearance (:func:`read_attributes`: gender, age,
hair, skin, glasses, beard; vocabulary in ``appearance_lexicon``) from the
preamble that event extraction drops.

Extraction (:func:`extract_events`):
1. The caption is cut at phase phrases ("At the beginning", "As the video
   progresses", "In the middle", "Towards the end", "Finally", "In the later
   part", "In the following part" (= next phase), ... see
   ``facial_lexicon``). Text before the first phase phrase is the static
   appearance description and is dropped; a caption without any phase phrase
   loses its leading sentences that look like appearance/summary ("The video
   shows ...", "She has long hair ..."), except the last sentence.
2. Each part is cut into sentences, then clauses at commas and conjunctions
   ("and", "then", "while", "as", "with", ...). Clauses with a negation
   ("no", "not", "without", ...) give no event.
3. In each clause every action cue (lexicon) is bound to the nearest face-part
   noun it makes sense with; a cue with no part noun in its clause takes the
   part of the previous clause in the sentence ("turns his head and lowers
   it"), or is an event on its own ("blinks", "smiles", "nods", "speaks",
   "looks to the left"). Facial states count as events ("mouth slightly
   open", "eyebrows furrowed": in facial captions they are the content, and
   the appearance preamble is already gone), except the resting states
   "eyes (are) open", "looking straight ahead / forward", "mouth closed".
4. Events get the phase of their part of the caption; repeats of the same
   (part, action, direction) within one phase are dropped. Of more than
   ``MAX_EVENTS`` (10), the phases' 1st events are kept first, then their
   2nd, ... (so late phases are not cut off); narrative order is kept.

Relation of an event h to a premise p (phase is ignored: AutoDQ compares
events with a whole caption, TEM gets order from the LCS):
* event vs event -- **entailment** iff same part and action and h's
  direction is None or equal to p's ("turns head to the left" entails "turns
  head"; not the reverse: a premise without a direction does not entail a
  directed event); **contradiction** iff same part and opposite actions
  (``events.OPPOSITE_ACTIONS``) or same part
  and action with opposite directions (``events.OPPOSITE_DIRECTIONS``);
  else **neutral**.
* event vs caption -- all the caption's events (not capped at 10: Tarsier's
  judge reads the whole caption): entailment if one entails h, else
  contradiction if one contradicts h, else neutral.
* a ``str`` event (from another judge) is parsed like a caption: entailment
  iff it yields events and all are entailed, contradiction if any is
  contradicted, else neutral.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from facetrack_jax.events import OPPOSITE_ACTIONS, OPPOSITE_DIRECTIONS, PHASES, Event
from facetrack_jax.metrics import appearance_lexicon
from facetrack_jax.metrics import facial_lexicon as lex
from facetrack_jax.metrics.judge import MAX_EVENTS, EventItem, Relation

# Opposites among the actions real captions need beyond SYNTHETIC_EVENTS.
_OPPOSITES = OPPOSITE_ACTIONS


def _normalise(caption: str) -> str:
  if not isinstance(caption, str):
    raise TypeError(f"caption must be a str, got {type(caption).__name__}")
  return caption.lower().replace("\u2019", "'").replace('"', "'")


def _phase_parts(text: str) -> tuple[str, list[tuple[str | None, str]]]:
  """(the appearance preamble, [(phase, text)] of the rest in narrative order)."""
  matches = list(lex.PHASE_RE.finditer(text))
  if not matches:  # the leading appearance sentences, never the last one
    sentences = [s for s in lex.SENTENCE_SPLIT.split(text) if s.strip()]
    preamble = []
    while len(sentences) > 1 and lex.APPEARANCE.search(sentences[0]):
      preamble.append(sentences.pop(0))
    return ". ".join(preamble), [(None, s) for s in sentences]
  parts, phase = [], None
  for m, nxt in zip(matches, matches[1:] + [None]):
    named = lex.PHASE_OF_GROUP[m.lastgroup]
    if named == "next":
      phase = PHASES[min(PHASES.index(phase) + 1, len(PHASES) - 1)] if phase else PHASES[1]
    else:
      phase = named
    parts.append((phase, text[m.end():nxt.start() if nxt else len(text)]))
  return text[:matches[0].start()], parts


def _clause_events(clause: str, carried: str | None,
                   last: Event | None = None) -> tuple[list[Event], str | None]:
  """Events of one clause (phase unset) and the part kind to carry on;
  ``last``: the previous clause's last event."""
  clause = lex.ADVERBS.sub("", clause).strip()
  if not clause or lex.NEGATION.search(clause):
    return [], carried
  only = lex.DIRECTION_ONLY.fullmatch(clause)
  if only and last is not None and last.direction in ("left", "right"):
    return [Event(last.part, last.action, only.group("d"))], carried
  parts = [(m.start(), m.end(), lex.PART_OF_GROUP[m.lastgroup]) for m in lex.PART_RE.finditer(clause)]
  events = []
  for cue in lex.CUE_RE.finditer(clause):
    name, word = cue.lastgroup, cue.group()
    direction, fb = lex.direction_in(clause[cue.start():])
    if direction is None:
      direction, fb = lex.direction_in(clause)
    # Nearest part noun first (0 when inside the cue: "opens her eyes wide").
    candidates = sorted(parts, key=lambda p: max(0, p[0] - cue.end(), cue.start() - p[1]))
    event = None
    for start, _, kind in candidates:
      event = lex.event_for(kind, name, word, direction, fb, verb_first=start > cue.start())
      if event:
        carried = kind
        break
    if event is None:
      event = lex.standalone_event(name, word, direction, fb)
    if event is None and carried and (not candidates or lex.PRONOUN.search(clause)):
      event = lex.event_for(carried, name, word, direction, fb, verb_first=True)
    if event:
      events.append(event)
  if Event("head", "shake") in events:  # "turns his head from side to side"
    events = [e for e in events if not (e.part == "head" and e.direction is None and e.action in ("turn", "tilt"))]
  if parts and not events:
    carried = parts[-1][2]
  return events, carried


def extract_events(caption: str) -> tuple[Event, ...]:
  """≤ MAX_EVENTS facial events of a caption in narrative order, with phase."""
  return _cap(list(all_events(caption)))


@functools.lru_cache(maxsize=65536)
def all_events(caption: str) -> tuple[Event, ...]:
  """Every facial event of a caption (no cap): what a premise caption says."""
  text = _normalise(caption)
  out: list[Event] = []
  seen: set[Event] = set()
  for phase, part in _phase_parts(text)[1]:
    for sentence in lex.SENTENCE_SPLIT.split(part):
      carried, last = None, None
      for clause in lex.CLAUSE_SPLIT.split(sentence):
        events, carried = _clause_events(clause, carried, last)
        last = events[-1] if events else last
        for e in events:
          e = Event(e.part, e.action, e.direction, phase)
          if e not in seen:
            seen.add(e)
            out.append(e)
  return tuple(out)


def read_attributes(caption: str) -> dict[str, str | None]:
  """The main character's appearance as the caption states it:
  ``{attribute: value or None}`` for ``appearance_lexicon.ATTRIBUTES``
  (gender, age, hair colour / length, skin, glasses, beard), read from the
  appearance preamble that :func:`extract_events` drops."""
  text = _normalise(caption)
  return appearance_lexicon.read_appearance(_phase_parts(text)[0], text)


def _cap(events: list[Event]) -> tuple[Event, ...]:
  """At most MAX_EVENTS, spread over the phases: take the 1st event of every
  phase, then the 2nd, ... until full; narrative order is kept."""
  if len(events) <= MAX_EVENTS:
    return tuple(events)
  rank, count = [], {}
  for e in events:
    rank.append(count.get(e.phase, 0))
    count[e.phase] = rank[-1] + 1
  keep = sorted(range(len(events)), key=lambda i: (rank[i], i))[:MAX_EVENTS]
  return tuple(events[i] for i in sorted(keep))


def event_relation(h: Event, p: Event) -> Relation:
  """Does event p entail event h? (phases ignored)"""
  if h.part != p.part:
    return "neutral"
  if h.action == p.action:
    if h.direction is None or h.direction == p.direction:
      return "entailment"
    if p.direction is not None and OPPOSITE_DIRECTIONS.get(h.direction) == p.direction:
      return "contradiction"
    return "neutral"
  if frozenset({(h.part, h.action), (p.part, p.action)}) in _OPPOSITES:
    return "contradiction"
  return "neutral"


def relation(hypothesis: EventItem, premise: EventItem) -> Relation:
  """Does the premise (an Event, or a caption / event sentence) entail the hypothesis?"""
  premises = (premise,) if isinstance(premise, Event) else all_events(premise)
  if isinstance(hypothesis, str):
    hyps = extract_events(hypothesis)
    if not hyps:
      return "neutral"
    rels = [relation(h, premise) for h in hyps]
    if "contradiction" in rels:
      return "contradiction"
    return "entailment" if all(r == "entailment" for r in rels) else "neutral"
  rels = {event_relation(hypothesis, p) for p in premises}
  for r in ("entailment", "contradiction"):
    if r in rels:
      return r
  return "neutral"


class OfflineJudge:
  """Rule-based judge (see module docstring); implements ``judge.Judge``."""

  name = "offline"

  def extract_events(self, captions: Sequence[str]) -> list[list[EventItem]]:
    return [list(extract_events(c)) for c in captions]

  def relations(self, pairs: Sequence[tuple[EventItem, EventItem | str]]) -> list[Relation]:
    return [relation(h, p) for h, p in pairs]
