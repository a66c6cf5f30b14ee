"""SentencePiece tokenizer: training on captions and a thin wrapper.

Our own models (``train_tokenizer``) have fixed special ids, which the model
config relies on (``configs/*.py``: ``model.visual_token_id``)::

    0 <pad>   1 <unk>   2 <s> (bos)   3 </s> (eos)
    4 <visual>   5 <start_of_turn>   6 <end_of_turn>

The last three are *control* symbols: encoding text never produces them (a
caption that spells "<visual>" cannot forge a visual token); the prompt
builder inserts their ids. ``byte_fallback`` makes every string encodable, and
identity normalisation without whitespace clean-up makes
``decode(encode(text)) == text`` exact, newlines included.

Any other SentencePiece model (Llama, Gemma, ...) loads too: special pieces are
looked up by name; name existing pieces for the ones it lacks, e.g.
``Tokenizer(path, visual_piece="<unused0>")``.

Hugging Face ``tokenizer.json`` files (Qwen2, Llama-3 byte-level BPE) load
through :func:`load` as :class:`facetrack_jax.hf_tokenizer.HFTokenizer`, which
has the same interface. ``load`` picks by path: ``*.json`` or a directory
holding ``tokenizer.json`` -> HF; anything else (``*.model``, a directory
holding ``tokenizer.model``) -> SentencePiece. Paths are ``etils.epath``
(local or ``gs://``).

CLI::

    python -m facetrack_jax.tokenizer train --captions A.json [B.json ...] \
        --vocab-size 1024 --out tok.model          # or --out tokenizer.json
"""

from __future__ import annotations

import argparse
import io
import json
import pathlib
from collections.abc import Iterable, Sequence

import sentencepiece as spm
from etils import epath

PAD, UNK, BOS, EOS = 0, 1, 2, 3
VISUAL_PIECE = "<visual>"
START_OF_TURN_PIECE = "<start_of_turn>"
END_OF_TURN_PIECE = "<end_of_turn>"
CONTROL_PIECES = (VISUAL_PIECE, START_OF_TURN_PIECE, END_OF_TURN_PIECE)  # ids 4, 5, 6


class Tokenizer:
  """Wraps a SentencePiece ``.model`` file.

  Attributes: ``pad_id, unk_id, bos_id, eos_id, visual_id, start_of_turn_id,
  end_of_turn_id, vocab_size``. A model without a pad id pads with its unk id
  (pad positions carry loss mask 0 and sit after every real token, so causal
  attention never reads them).
  """

  def __init__(self, path: str | pathlib.Path | None = None, *,
               model_proto: bytes | None = None,
               visual_piece: str = VISUAL_PIECE,
               start_of_turn_piece: str = START_OF_TURN_PIECE,
               end_of_turn_piece: str = END_OF_TURN_PIECE):
    if (path is None) == (model_proto is None):
      raise ValueError("Tokenizer: give exactly one of path or model_proto")
    self.path = None if path is None else str(path)
    if model_proto is None:
      p = epath.Path(path)
      if not p.is_file():
        raise FileNotFoundError(f"tokenizer model {p} does not exist; train one with "
                                "`python -m facetrack_jax.tokenizer train ...`")
      model_proto = p.read_bytes()
    self._proto = model_proto
    self._pieces = (visual_piece, start_of_turn_piece, end_of_turn_piece)
    self._sp = spm.SentencePieceProcessor()
    try:
      self._sp.LoadFromSerializedProto(model_proto)
    except Exception as e:  # sentencepiece raises a bare RuntimeError/OSError
      raise ValueError(f"tokenizer {self.path or '<proto>'}: not a SentencePiece "
                       f"model ({e})") from e
    sp = self._sp
    self.vocab_size = sp.vocab_size()
    self.unk_id = sp.unk_id()
    self.bos_id = self._special(sp.bos_id(), "<s>", "<bos>", what="bos")
    self.eos_id = self._special(sp.eos_id(), "</s>", "<eos>", what="eos")
    pad = self._find("<pad>")
    self.pad_id = sp.pad_id() if sp.pad_id() >= 0 else (self.unk_id if pad is None else pad)
    self.visual_id = self._required(visual_piece, "visual_piece",
                                    "the visual placeholder")
    self.start_of_turn_id = self._required(start_of_turn_piece, "start_of_turn_piece",
                                           "the start-of-turn marker")
    self.end_of_turn_id = self._required(end_of_turn_piece, "end_of_turn_piece",
                                         "the end-of-turn marker")

  # -- piece lookup ---------------------------------------------------------
  def _find(self, piece: str) -> int | None:
    i = self._sp.piece_to_id(piece)
    return i if self._sp.id_to_piece(i) == piece else None

  def _special(self, sp_id: int, *names: str, what: str) -> int:
    if sp_id >= 0:
      return sp_id
    for name in names:
      if (i := self._find(name)) is not None:
        return i
    raise ValueError(f"tokenizer {self.path or '<proto>'} has no {what} piece "
                     f"(looked for {names})")

  def _required(self, piece: str, arg: str, what: str) -> int:
    i = self._find(piece)
    if i is None:
      raise ValueError(
          f"tokenizer {self.path or '<proto>'} has no piece {piece!r} ({what}). "
          f"Train a tokenizer that has it (`python -m facetrack_jax.tokenizer "
          f"train ...` adds {', '.join(CONTROL_PIECES)} as ids 4-6), or name an "
          f"existing piece: Tokenizer(path, {arg}='<some piece>').")
    return i

  # -- text <-> ids ---------------------------------------------------------
  def encode(self, text: str) -> list[int]:
    """Text -> ids; never adds bos/eos and never yields control ids."""
    if not isinstance(text, str):
      raise TypeError(f"Tokenizer.encode: expected str, got {type(text).__name__}")
    return self._sp.encode(text)

  def decode(self, ids: Iterable[int]) -> str:
    """Ids -> text, cut at the first eos; pad/bos/control ids vanish."""
    ids = [int(i) for i in ids]
    if self.eos_id in ids:
      ids = ids[:ids.index(self.eos_id)]
    return self._sp.decode(ids)

  def piece_id(self, piece: str) -> int:
    """The id of ``piece`` (a special token by name, e.g. ``<|vision_start|>``);
    ``KeyError`` naming it if the model has no such piece."""
    i = self._find(piece)
    if i is None:
      raise KeyError(f"tokenizer {self.path or '<proto>'} has no piece {piece!r}")
    return i

  def id_to_piece(self, i: int) -> str:
    return self._sp.id_to_piece(int(i))

  def __repr__(self) -> str:
    return f"Tokenizer({self.path or '<proto>'}, vocab_size={self.vocab_size})"

  # grain worker processes pickle the pipeline, tokenizer included.
  def __getstate__(self):
    return dict(path=self.path, proto=self._proto, pieces=self._pieces)

  def __setstate__(self, state):
    v, s, e = state["pieces"]
    self.__init__(model_proto=state["proto"], visual_piece=v,
                  start_of_turn_piece=s, end_of_turn_piece=e)
    self.path = state["path"]


PIECE_KEYS = ("visual", "start_of_turn", "end_of_turn", "bos", "eos", "pad")


def load(path, **pieces):
  """The tokenizer at ``path`` (module docstring): SentencePiece or HF.

  ``pieces``: special-token names by role (``visual_piece="<|image_pad|>"``,
  keys ``<role>_piece`` for :data:`PIECE_KEYS`); empty / None = the default.
  """
  pieces = {k: v for k, v in pieces.items() if v}
  p = epath.Path(path)
  if p.is_dir():
    found = [p / n for n in ("tokenizer.json", "tokenizer.model") if (p / n).is_file()]
    if not found:
      raise FileNotFoundError(f"tokenizer directory {p} holds neither tokenizer.json "
                              "nor tokenizer.model")
    p = found[0]
  if p.name.endswith(".json"):
    from facetrack_jax.hf_tokenizer import HFTokenizer
    return HFTokenizer(p, **pieces)
  extra = sorted(set(pieces) - {"visual_piece", "start_of_turn_piece", "end_of_turn_piece"})
  if extra:
    raise ValueError(f"tokenizer {p}: a SentencePiece model takes no {extra} (its "
                     "bos/eos/pad come from the model)")
  return Tokenizer(p, **pieces)


def from_config(data_cfg):
  """:func:`load` of ``config.data.tokenizer`` with the optional
  ``config.data.<role>_piece`` names."""
  return load(data_cfg.tokenizer, **{f"{k}_piece": data_cfg.get(f"{k}_piece", "")
                                     for k in PIECE_KEYS})


def train_tokenizer(texts: Iterable[str], vocab_size: int, out: str | pathlib.Path | None = None,
                    model_type: str = "unigram") -> Tokenizer:
  """Trains a tokenizer (in memory) with the fixed special ids above.

  ``texts`` are the training sentences (captions; whole multi-line strings are
  fine). The prompt's instruction texts and role names are added so that the
  prompt tokenises compactly. Writes ``out`` when given.
  """
  from facetrack_jax import prompt  # local: prompt does not import us
  texts = [t for t in texts] + list(prompt.tokenizer_training_text())
  if not texts:
    raise ValueError("train_tokenizer: no training text")
  model = io.BytesIO()
  try:
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=model,
        vocab_size=vocab_size, model_type=model_type,
        pad_id=PAD, unk_id=UNK, bos_id=BOS, eos_id=EOS,
        control_symbols=list(CONTROL_PIECES),
        byte_fallback=True, character_coverage=1.0, split_digits=True,
        normalization_rule_name="identity", remove_extra_whitespaces=False,
        add_dummy_prefix=False, max_sentence_length=1 << 20,
        num_threads=1, minloglevel=2)
  except RuntimeError as e:
    raise ValueError(f"train_tokenizer(vocab_size={vocab_size}, model_type="
                     f"{model_type!r}) on {len(texts)} texts failed: {e}") from e
  tok = Tokenizer(model_proto=model.getvalue())
  if out is not None:
    out = epath.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(model.getvalue())
    tok.path = str(out)
  return tok


def read_captions(paths: Sequence[str | pathlib.Path]) -> list[str]:
  """Captions from annotation files: JSON lists of ``{"caption": str, ...}``."""
  captions = []
  for path in paths:
    try:
      data = json.loads(epath.Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
      raise ValueError(f"caption file {path}: cannot read JSON ({e})") from e
    if not isinstance(data, list):
      raise ValueError(f"caption file {path}: expected a JSON list of objects "
                       f"with a 'caption' field, got {type(data).__name__}")
    for i, item in enumerate(data):
      if not isinstance(item, dict) or not isinstance(item.get("caption"), str):
        raise ValueError(f"caption file {path}: entry {i} has no string 'caption'")
      captions.append(item["caption"])
  return captions


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(prog="python -m facetrack_jax.tokenizer")
  sub = parser.add_subparsers(dest="cmd", required=True)
  t = sub.add_parser("train", help="train a SentencePiece model on captions")
  t.add_argument("--captions", nargs="+", required=True,
                 help="annotation JSON files (lists of {'caption': ...})")
  t.add_argument("--vocab-size", type=int, required=True)
  t.add_argument("--out", required=True,
                 help="output .model path (SentencePiece), or tokenizer.json (a "
                      "Qwen2-style byte-level BPE: hf_tokenizer.train_byte_level_bpe)")
  t.add_argument("--model-type", default="unigram", choices=("unigram", "bpe"))
  args = parser.parse_args(argv)
  try:
    captions = read_captions(args.captions)
    if args.out.endswith(".json"):
      from facetrack_jax.hf_tokenizer import train_byte_level_bpe
      tok = train_byte_level_bpe(captions, args.vocab_size, args.out)
    else:
      tok = train_tokenizer(captions, args.vocab_size, args.out, args.model_type)
  except ValueError as e:
    parser.exit(2, f"error: {e}\n")
  print(f"wrote {args.out}: vocab {tok.vocab_size}, {len(captions)} captions")


if __name__ == "__main__":
  main()
