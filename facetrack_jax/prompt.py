"""Chat templates, instructions and the loss mask.

Layout of one example, template "gemma" (the default; our SentencePiece
tokenizers; ids, ``"text"`` = ``tokenizer.encode(text)``)::

    <s>
    <start_of_turn> "user\n" <visual> × N_vis  "instruction" <end_of_turn> "\n"
    <start_of_turn> "model\n"                                  ← build_prompt ends here
    "caption" </s>
    <pad> ...                                                  ← right padding to L

Template "qwen2" (Qwen2's chat format, Qwen2-VL's vision markers)::

    <|im_start|> "system\nYou are a helpful assistant." <|im_end|> "\n"
    <|im_start|> "user\n" <|vision_start|> <|video_pad|> × N_vis <|vision_end|>
      "instruction" <|im_end|> "\n"
    <|im_start|> "assistant\n"                                 ← build_prompt ends here
    "caption" <|im_end|>
    <pad> ...

Special tokens are looked up by piece name (``tokenizer.piece_id``); the
turn markers and the visual placeholder are the tokenizer's
``start_of_turn_id`` / ``end_of_turn_id`` / ``visual_id`` (a Qwen2 tokenizer
names ``<|im_start|>``, ``<|im_end|>``, ``<|video_pad|>`` for them). The
caption ends with the template's ``end`` token (:func:`end_id`): the
tokenizer's eos ("gemma") or ``<|im_end|>`` ("qwen2"); generation stops there.

N_vis = ``models.facetrack.num_visual_tokens(config.model)``; the model swaps
the N_vis ``<visual>`` ids for its visual tokens in order. Training samples the
instruction among :data:`INSTRUCTIONS` (canonical + paraphrases); evaluation
and generation use the canonical FEC-Bench one.
"""

from __future__ import annotations

import dataclasses

import numpy as np

INSTRUCTION = ("Please provide a detailed description of the facial appearance "
               "attributes and expression changes of the character in the video.")
PARAPHRASES = (
    "Describe in detail the facial appearance of the character in the video and "
    "how their expression changes.",
    "What does the character in the video look like, and how does their facial "
    "expression change over time? Please be detailed.",
    "Give a detailed account of the character's facial attributes and the changes "
    "in their expression throughout the video.",
    "Describe the main character's face in this video: their appearance first, "
    "then every change in expression from beginning to end.",
    "Provide a thorough description of the facial features of the person in the "
    "video and of the expression changes they show.",
    "Explain in detail how the character in the video looks and how their facial "
    "expression evolves as the video plays.",
)
INSTRUCTIONS = (INSTRUCTION,) + PARAPHRASES
USER_ROLE, MODEL_ROLE = "user\n", "model\n"


@dataclasses.dataclass(frozen=True)
class ChatTemplate:
  """One chat format (module docstring). Pieces are special-token names."""
  bos: bool                          # start with the tokenizer's bos
  user_role: str
  model_role: str
  system: str | None = None          # a system turn's text (None: no system turn)
  vision_start: str | None = None    # pieces around the visual placeholders
  vision_end: str | None = None
  end: str | None = None             # closes the caption (None: the tokenizer's eos)


TEMPLATES = {
    "gemma": ChatTemplate(bos=True, user_role=USER_ROLE, model_role=MODEL_ROLE),
    "qwen2": ChatTemplate(bos=False, user_role="user\n", model_role="assistant\n",
                          system="system\nYou are a helpful assistant.",
                          vision_start="<|vision_start|>", vision_end="<|vision_end|>",
                          end="<|im_end|>"),
}


def get_template(name: str) -> ChatTemplate:
  if name not in TEMPLATES:
    raise ValueError(f"config.data.chat_template={name!r}: unknown (have {sorted(TEMPLATES)})")
  return TEMPLATES[name]


def _piece(tokenizer, piece: str, name: str, template: str) -> int:
  try:
    return tokenizer.piece_id(piece)
  except (KeyError, ValueError) as e:
    raise ValueError(f"chat template {template!r} needs the special token {piece!r} "
                     f"({name}), which tokenizer {tokenizer} lacks: {e}") from e


def end_id(tokenizer, template: str = "gemma") -> int:
  """The id that closes a caption (and stops generation) under ``template``."""
  t = get_template(template)
  return tokenizer.eos_id if t.end is None else _piece(tokenizer, t.end, "end", template)


def tokenizer_training_text() -> tuple[str, ...]:
  """Prompt texts a tokenizer should see in training (roles, instructions)."""
  return (USER_ROLE, MODEL_ROLE) + INSTRUCTIONS


def build_prompt(tokenizer, n_visual: int, instruction: str | None = None,
                 template: str = "gemma") -> np.ndarray:
  """The prompt up to and including the model's role (``"model\\n"``,
  ``"assistant\\n"``): int32[P].

  Args:
    tokenizer: a :class:`facetrack_jax.tokenizer.Tokenizer`.
    n_visual: number of visual placeholders (``num_visual_tokens``).
    instruction: the user's request; None = the canonical FEC-Bench one.
    template: a key of :data:`TEMPLATES`.
  """
  if n_visual < 0:
    raise ValueError(f"build_prompt: n_visual must be >= 0, got {n_visual}")
  instruction = INSTRUCTION if instruction is None else instruction
  c, t = get_template(template), tokenizer
  start, stop, nl = t.start_of_turn_id, t.end_of_turn_id, t.encode("\n")
  if c.bos and t.bos_id is None:
    raise ValueError(f"chat template {template!r} starts with a bos token, which tokenizer "
                     f"{t} lacks: use a template without one (e.g. 'qwen2')")
  ids = [t.bos_id] if c.bos else []
  if c.system is not None:
    ids += [start] + t.encode(c.system) + [stop] + nl
  visual = [t.visual_id] * n_visual
  if c.vision_start is not None:
    visual = ([_piece(t, c.vision_start, "vision_start", template)] + visual
              + [_piece(t, c.vision_end, "vision_end", template)])
  ids += ([start] + t.encode(c.user_role) + visual + t.encode(instruction) + [stop] + nl
          + [start] + t.encode(c.model_role))
  return np.asarray(ids, np.int32)


def sample_instruction(rng: np.random.Generator | None) -> str:
  """A uniformly drawn instruction of :data:`INSTRUCTIONS`; canonical if rng is None."""
  return INSTRUCTION if rng is None else INSTRUCTIONS[int(rng.integers(len(INSTRUCTIONS)))]


def build_training_example(tokenizer, caption: str, n_visual: int, max_len: int,
                           rng: np.random.Generator | None = None,
                           template: str = "gemma") -> dict[str, np.ndarray]:
  """One teacher-forced example of fixed length L = ``max_len``.

  Returns ``tokens int32[L]`` (prompt, caption, end (:func:`end_id`: eos or
  ``<|im_end|>``), then pad), ``targets int32[L]`` (tokens shifted left by
  one, pad at the end) and ``loss_mask float32[L]``: 1 exactly where the
  target is a caption token or the end token.

  A caption too long for ``max_len`` is cut (at a token, possibly mid-word)
  so that the eos still fits as the last token: the model learns to stop.
  Choose ``max_len`` ≥ prompt + longest caption + 1 to avoid cuts.

  Args:
    rng: draws the instruction among the paraphrases; None = canonical.
  """
  prompt = build_prompt(tokenizer, n_visual, sample_instruction(rng), template)
  budget = max_len - len(prompt) - 1  # caption tokens that fit beside the eos
  if budget < 0:
    raise ValueError(f"max_len={max_len} is too short for the prompt of "
                     f"{len(prompt)} tokens ({n_visual} visual) plus eos")
  caption_ids = tokenizer.encode(caption)[:budget]
  seq = np.concatenate([prompt, np.asarray(caption_ids + [end_id(tokenizer, template)],
                                           np.int32)])
  tokens = np.full((max_len,), tokenizer.pad_id, np.int32)
  tokens[:len(seq)] = seq
  targets = np.full((max_len,), tokenizer.pad_id, np.int32)
  targets[:-1] = tokens[1:]
  loss_mask = np.zeros((max_len,), np.float32)
  # Target i is token i + 1: caption + eos occupy tokens [len(prompt), len(seq)).
  loss_mask[len(prompt) - 1:len(seq) - 1] = 1.0
  return dict(tokens=tokens, targets=targets, loss_mask=loss_mask)
