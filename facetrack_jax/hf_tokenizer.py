"""Hugging Face ``tokenizer.json`` (byte-level BPE: Qwen2, Llama-3) behind the
:class:`facetrack_jax.tokenizer.Tokenizer` interface.

Same attributes and methods as the SentencePiece wrapper (``pad_id, bos_id,
eos_id, visual_id, start_of_turn_id, end_of_turn_id, vocab_size``;
``encode, decode, piece_id, id_to_piece``). Special tokens are looked up by
name; the names come from the tokenizer's family (:data:`FAMILIES`, told
apart by the special tokens present) unless given::

    qwen2:  bos -  eos/pad <|endoftext|>  turns <|im_start|> <|im_end|>
            visual <|video_pad|> (Qwen2-VL's video placeholder)
    llama3: bos <|begin_of_text|>  eos/pad <|end_of_text|>
            turns <|start_header_id|> <|eot_id|>  visual: must be named

Encoding text never yields a special id (``encode_special_tokens``: a caption
that spells ``<|video_pad|>`` is encoded as text, as transformers does with
``split_special_tokens=True``), and adds no bos/eos.

:func:`train_byte_level_bpe` makes a small Qwen2-style tokenizer.json locally
(Qwen2's normaliser, pre-tokeniser split, byte-level decoder, and its special
tokens in its order after the learned pieces), for tests and demos.
"""

from __future__ import annotations

from collections.abc import Iterable

import tokenizers
from etils import epath

# Qwen2's split pattern (its tokenizer.json's pre_tokenizer).
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
                 r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
# Qwen2 / Qwen2-VL's special tokens in id order (151643 ... 151656).
QWEN2_SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>",
                 "<|object_ref_end|>", "<|box_start|>", "<|box_end|>", "<|quad_start|>",
                 "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
                 "<|image_pad|>", "<|video_pad|>")

FAMILIES = {
    "qwen2": dict(bos=None, eos="<|endoftext|>", pad="<|endoftext|>",
                  start_of_turn="<|im_start|>", end_of_turn="<|im_end|>",
                  visual="<|video_pad|>"),
    "llama3": dict(bos="<|begin_of_text|>", eos="<|end_of_text|>", pad="<|end_of_text|>",
                   start_of_turn="<|start_header_id|>", end_of_turn="<|eot_id|>",
                   visual=None),
}
_MARKERS = {"qwen2": "<|im_start|>", "llama3": "<|begin_of_text|>"}


class HFTokenizer:
  """Wraps a ``tokenizer.json`` (the ``tokenizers`` library).

  Args:
    path: the tokenizer.json (any epath: local, ``gs://``); or
    json_str: its contents.
    visual_piece, ...: special-token names overriding the family's
      (:data:`FAMILIES`); ``visual_piece`` is required for a family without one.
  """

  def __init__(self, path=None, *, json_str: str | None = None,
               visual_piece: str | None = None, start_of_turn_piece: str | None = None,
               end_of_turn_piece: str | None = None, bos_piece: str | None = None,
               eos_piece: str | None = None, pad_piece: str | None = None):
    if (path is None) == (json_str is None):
      raise ValueError("HFTokenizer: give exactly one of path or json_str")
    self.path = None if path is None else str(path)
    if json_str is None:
      p = epath.Path(path)
      if not p.is_file():
        raise FileNotFoundError(f"tokenizer {p} does not exist")
      json_str = p.read_text()
    try:
      self._tok = tokenizers.Tokenizer.from_str(json_str)
    except Exception as e:  # tokenizers raises a bare Exception on bad JSON
      raise ValueError(f"tokenizer {self.path or '<json>'}: not a tokenizers "
                       f"tokenizer.json ({e})") from e
    self._json = json_str
    self._tok.encode_special_tokens = True
    self._overrides = dict(visual=visual_piece, start_of_turn=start_of_turn_piece,
                           end_of_turn=end_of_turn_piece, bos=bos_piece, eos=eos_piece,
                           pad=pad_piece)
    self.family = next((f for f, m in _MARKERS.items() if self._find(m) is not None), None)
    names = dict(FAMILIES.get(self.family, {}))
    names.update({k: v for k, v in self._overrides.items() if v is not None})
    self.pieces = names
    self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
    self.bos_id = None if names.get("bos") is None else self._required("bos", names)
    self.eos_id = self._required("eos", names)
    self.pad_id = self._required("pad", names)
    self.unk_id = self.pad_id   # byte-level: no unknowns
    self.visual_id = self._required("visual", names)
    self.start_of_turn_id = self._required("start_of_turn", names)
    self.end_of_turn_id = self._required("end_of_turn", names)

  def _find(self, piece: str) -> int | None:
    return self._tok.token_to_id(piece)

  def _required(self, what: str, names: dict) -> int:
    piece = names.get(what)
    i = None if piece is None else self._find(piece)
    if i is None:
      raise ValueError(
          f"tokenizer {self.path or '<json>'} (family {self.family or 'unknown'}): "
          + (f"no special token {piece!r} ({what})" if piece else f"no {what} token known")
          + f"; name an existing one: config.data.{what}_piece='<|...|>' "
          f"(HFTokenizer({what}_piece=...))")
    return i

  # -- text <-> ids ---------------------------------------------------------
  def encode(self, text: str) -> list[int]:
    """Text -> ids; never adds bos/eos and never yields special ids."""
    if not isinstance(text, str):
      raise TypeError(f"Tokenizer.encode: expected str, got {type(text).__name__}")
    return self._tok.encode(text, add_special_tokens=False).ids

  def decode(self, ids: Iterable[int]) -> str:
    """Ids -> text, cut at the first eos; special ids vanish."""
    ids = [int(i) for i in ids]
    if self.eos_id in ids:
      ids = ids[:ids.index(self.eos_id)]
    return self._tok.decode(ids, skip_special_tokens=True)

  def piece_id(self, piece: str) -> int:
    i = self._find(piece)
    if i is None:
      raise KeyError(f"tokenizer {self.path or '<json>'} has no token {piece!r}")
    return i

  def id_to_piece(self, i: int) -> str:
    return self._tok.id_to_token(int(i))

  def __repr__(self) -> str:
    return f"HFTokenizer({self.path or '<json>'}, vocab_size={self.vocab_size})"

  def __getstate__(self):   # grain worker processes pickle the pipeline
    return dict(path=self.path, json=self._json, overrides=self._overrides)

  def __setstate__(self, state):
    o = state["overrides"]
    self.__init__(json_str=state["json"], **{f"{k}_piece": v for k, v in o.items()})
    self.path = state["path"]


def train_byte_level_bpe(texts: Iterable[str], vocab_size: int, out=None,
                         special_tokens=QWEN2_SPECIAL, **pieces) -> HFTokenizer:
  """A Qwen2-style byte-level BPE of at most ``vocab_size`` learned pieces
  (256 byte pieces + merges), then ``special_tokens`` in order; written as
  tokenizer.json to ``out`` (an epath) when given. ``pieces``: as
  :class:`HFTokenizer`'s ``<role>_piece`` arguments."""
  from facetrack_jax import prompt  # local: prompt does not import us
  from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers
  texts = list(texts) + list(prompt.tokenizer_training_text())
  tok = tokenizers.Tokenizer(models.BPE(byte_fallback=False, ignore_merges=False))
  tok.normalizer = normalizers.NFC()
  tok.pre_tokenizer = pre_tokenizers.Sequence([
      pre_tokenizers.Split(tokenizers.Regex(QWEN2_PATTERN), behavior="isolated",
                           invert=False),
      pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
  tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False,
                                   use_regex=False)
  tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False,
                                            use_regex=False)
  tok.train_from_iterator(texts, trainers.BpeTrainer(
      vocab_size=vocab_size, show_progress=False, special_tokens=[],
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
  tok.add_special_tokens([tokenizers.AddedToken(t, special=True, normalized=False)
                          for t in special_tokens])
  json_str = tok.to_str()
  result = HFTokenizer(json_str=json_str, **pieces)
  if out is not None:
    out = epath.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json_str)
    result.path = str(out)
  return result
