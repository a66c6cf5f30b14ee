"""The offline judge's appearance lexicon: the main character's attributes
as a caption's appearance preamble states them (the static description
before the first phase phrase; ``judge_offline.read_attributes`` cuts it).

Attributes are the synthetic generator's (``data_prep/synthetic/people.py``,
words from ``captions.appearance_sentence``), values its words; real
FEC-Bench captions need a few more words for them ("golden hair", "a
female character", "in her twenties", "stubble") and one more value
(``hair_length`` "medium": "shoulder-length", "medium-length"):

  gender:      man, woman        (noun in the preamble; without one, or with
                                  both, the majority of he/his vs she/her in
                                  the whole caption)
  age:         young, middle-aged, elderly   (numbers: < 40, < 60, older)
  hair_colour: black, dark brown, brown, blonde, red, grey, white
               ("dark hair" alone states no colour)
  hair_length: long, medium, short, bald
  skin:        fair, light, tanned, brown, dark   ("X skin", "X-skinned", "X complexion")
  glasses:     yes, no
  beard:       yes, no           (beard, stubble, moustache, goatee, facial hair)

Glasses and beard: "yes" if the caption names them anywhere (not negated:
"without glasses" is "no"); "no" if it has an appearance preamble that does
not (the generator writes them whenever drawn), None without a preamble.
Every other attribute is None where the preamble does not state it.
"""

from __future__ import annotations

import re

from facetrack_jax.metrics.facial_lexicon import NEGATION

ATTRIBUTES = ("gender", "age", "hair_colour", "hair_length", "skin", "glasses", "beard")
GENDER_RE = re.compile(r"\b(?:(?P<woman>woman|women|female|lady|girl)|(?P<man>man|men|male|gentleman|boy|guy))"
                       r"(?:'s)?\b")
PRONOUN_GENDER_RE = re.compile(r"\b(?:(?P<man>he|his|him|himself)|(?P<woman>she|her|hers|herself))\b")
_DECADES = {"teens": 15, "twenties": 25, "thirties": 35, "forties": 45, "fifties": 55, "sixties": 65,
            "seventies": 75, "eighties": 85}
AGE_RE = re.compile(
    r"\b(?:(?P<middle>middle[- ]aged)|(?P<elderly>elderly|(?<!years )(?<!year )(?<!year-)old|senior)|"
    r"(?P<young>young|youthful|teenage\w*|teen|adolescent|boy|girl|child|kid))\b|"
    r"\b(?P<years>\d{1,2})[- ]years?[- ]old\b|"
    rf"\bin (?:his|her|their) (?:early |mid-?|late )?(?P<decade>{'|'.join(_DECADES)}|[1-9]0s)\b")
HAIR_NOUN_RE = re.compile(r"(?<!facial )\bhair\b(?![- ]?(?:clips?|pins?|bands?|ties?|accessor\w*|ornaments?|line|"
                          r"pieces?|nets?|dryer)\b)")
SKIN_NOUN_RE = re.compile(r"\b(?:skin(?:ned)?|complexion)\b")
BALD_RE = re.compile(r"\bbald\b|\b(?:shaved|shaven) head\b")


def _alternation(sources: tuple[tuple[str, str], ...]) -> tuple[re.Pattern, dict[str, str]]:
  """One regex of ``(value, pattern)`` sources (earlier wins at a position)
  and its {group: value} map."""
  pattern = re.compile("|".join(f"\\b(?P<v{i}>{src})\\b" for i, (_, src) in enumerate(sources)))
  return pattern, {f"v{i}": value for i, (value, _) in enumerate(sources)}


HAIR_COLOUR_RE, HAIR_COLOUR_OF_GROUP = _alternation((
    ("blonde", r"(?:light[- ])?brownish[- ]yellow|yellow[- ]brown|golden[- ]brown|blond(?:e|ish)?|golden|gold|"
               r"yellow(?:ish)?|flaxen|platinum"),
    ("red", r"reddish[- ]brown|red[- ]brown|auburn|ginger|copper|red(?:dish)?"),
    ("dark brown", r"(?:dark|deep)[- ]brown|chestnut"),
    ("grey", r"gr[ae]y(?:ish)?(?:[- ]white)?|greying|graying|silver(?:y)?|salt[- ]and[- ]pepper"),
    ("white", r"white"),
    ("brown", r"(?:light[- ])?brown(?:ish)?|brunette"),
    ("black", r"(?:jet[- ])?black"),
))
HAIR_LENGTH_RE, HAIR_LENGTH_OF_GROUP = _alternation((
    ("medium", r"(?:medium|mid|shoulder|chin)[- ]length|medium"),
    ("long", r"long|waist[- ]length"),
    ("short", r"short|ultra-short|cropped|buzz(?:ed)?(?:[- ]cut)?|crew[- ]cut|pixie"),
))
SKIN_TONE_RE, SKIN_TONE_OF_GROUP = _alternation((
    ("dark", r"dark(?:er)?(?:[- ]brown)?|deep|black|ebony"),
    ("tanned", r"tann?ed|tan|olive|wheat(?:en)?(?:[- ]colou?red)?|bronzed?"),
    ("brown", r"(?:light[- ]|medium[- ])?brown"),
    ("fair", r"fair|pale|white|porcelain"),
    ("light", r"light"),
))
GLASSES_RE = re.compile(r"\b(?:(?:eye|sun)?glasses|spectacles|eyewear)\b")
BEARD_RE = re.compile(r"\b(?:beard(?:s|ed)?|stubble\w*|goatee|mo?ustache\w*|facial hair|whiskers)\b")
NO_BEARD_RE = re.compile(r"\b(?:clean[- ]shaven|beardless)\b")
# A noun phrase ends (reading backwards from its head noun) at these words.
_PHRASE_STOPS = frozenset(
    "with has have had is are was were of by in on at to for from her his their its a an the who that which "
    "she he they wearing wears wear appears looks hair skin eyes eyebrows brows face features complexion nose "
    "lips lip beard glasses forehead cheeks earrings makeup lipstick bangs freckles wrinkles head".split())
_TOKEN = re.compile(r"[a-z0-9'-]+|[,;.:()!?]")
_AFTER_HAIR = re.compile(r"\s*,?\s*(?:(?:that|which) )?(?:is|are|was|appears?(?: to be)?|looks?) "
                         r"(?P<words>[a-z' -]+)|\s+of (?P<len>[a-z]+)[- ]length")


def modifiers_before(text: str, end: int, limit: int = 6) -> str:
  """The words that modify a head noun starting at ``end`` ("has short,
  curly black hair" -> "short curly black"): read backwards up to a
  stop word or sentence punctuation, at most ``limit`` words."""
  words = []
  for tok in reversed(_TOKEN.findall(text[:end])):
    if tok == ",":
      continue
    if tok in ".;:()!?" or tok.strip("-") in _PHRASE_STOPS or len(words) == limit:
      break
    words.append(tok)
  return " ".join(reversed(words))


def words_after_hair(text: str, end: int) -> str:
  """What a predicate after "hair" says ("hair is light brown, ..." ->
  "light brown"; "hair of shoulder length" -> "shoulder-length")."""
  m = _AFTER_HAIR.match(text, end)
  if not m:
    return ""
  return f"{m.group('len')}-length" if m.group("len") else " ".join(m.group("words").split()[:4])


def last_value(pattern: re.Pattern, of_group: dict[str, str], text: str) -> str | None:
  """The value of the last match of an :func:`_alternation` in ``text``
  (the word nearest a head noun that follows), or None."""
  value = None
  for m in pattern.finditer(text):
    value = of_group[m.lastgroup]
  return value


def age_group(m: re.Match) -> str:
  """young / middle-aged / elderly of an :data:`AGE_RE` match (years: < 40
  young, < 60 middle-aged)."""
  if m.group("years") or m.group("decade"):
    d = m.group("decade")
    years = int(m.group("years") or (d[:-1] if d[0].isdigit() else _DECADES[d]))
    return "young" if years < 40 else "middle-aged" if years < 60 else "elderly"
  return {"middle": "middle-aged", "elderly": "elderly", "young": "young"}[m.lastgroup]


def _stated(pattern: re.Pattern, text: str, described: bool, absent: re.Pattern | None = None) -> str | None:
  """"yes" if ``text`` names ``pattern`` outside a negated clause ("without
  glasses"), else "no" if it says so or is ``described``, else None."""
  negated = False
  for m in pattern.finditer(text):
    clause = re.split(r"[,;.:()!?]", text[max(0, m.start() - 40):m.start()])[-1]
    if not NEGATION.search(" ".join(clause.split()[-4:])):
      return "yes"
    negated = True
  return "no" if negated or described or (absent is not None and absent.search(text)) else None


def _pronoun_gender(text: str) -> str | None:
  counts = {"man": 0, "woman": 0}
  for m in PRONOUN_GENDER_RE.finditer(text):
    counts[m.lastgroup] += 1
  if counts["man"] == counts["woman"]:
    return None
  return "man" if counts["man"] > counts["woman"] else "woman"


def read_appearance(preamble: str, text: str) -> dict[str, str | None]:
  """``{attribute: value or None}`` for :data:`ATTRIBUTES` from a caption's
  lower-cased appearance ``preamble`` and its whole lower-cased ``text``."""
  out: dict[str, str | None] = dict.fromkeys(ATTRIBUTES)
  nouns = [m.lastgroup for m in GENDER_RE.finditer(preamble)]
  if len(set(nouns)) == 1:
    out["gender"] = nouns[0]
  else:   # none, or "a man and a woman": the pronouns tell, else the first noun
    out["gender"] = _pronoun_gender(text) or (nouns[0] if nouns else None)
  m = AGE_RE.search(preamble)
  out["age"] = age_group(m) if m else None
  for hair in HAIR_NOUN_RE.finditer(preamble):
    before, after = modifiers_before(preamble, hair.start()), words_after_hair(preamble, hair.end())
    for key, pattern, of_group in (("hair_colour", HAIR_COLOUR_RE, HAIR_COLOUR_OF_GROUP),
                                   ("hair_length", HAIR_LENGTH_RE, HAIR_LENGTH_OF_GROUP)):
      if out[key] is None:
        out[key] = last_value(pattern, of_group, before) or last_value(pattern, of_group, after)
  if BALD_RE.search(preamble):
    out["hair_length"] = "bald"
  for skin in SKIN_NOUN_RE.finditer(preamble):
    out["skin"] = last_value(SKIN_TONE_RE, SKIN_TONE_OF_GROUP, modifiers_before(preamble, skin.start(), 3))
    if out["skin"]:
      break
  described = bool(preamble.strip())
  out["glasses"] = _stated(GLASSES_RE, text, described)
  out["beard"] = _stated(BEARD_RE, text, described, NO_BEARD_RE)
  return out
