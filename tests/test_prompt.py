"""Chat template, instruction sampling, targets / loss-mask alignment."""

import numpy as np
import pytest

from configs import tiny
from facetrack_jax import prompt
from facetrack_jax import tokenizer as tok_lib
from facetrack_jax.models.facetrack import num_visual_tokens

CAPTIONS = [
    "This video shows a young woman with long black hair.\nAt the beginning of the "
    "video, she turns her head to the left. Towards the end of the video, she smiles.",
    "An old man with glasses. As the video progresses, he raises his brows and blinks.",
]


@pytest.fixture(scope="module")
def tok():
  return tok_lib.train_tokenizer(CAPTIONS * 20, vocab_size=350)


def test_prompt_layout(tok):
  n_vis = num_visual_tokens(tiny.get_config().model)
  p = prompt.build_prompt(tok, n_vis)
  assert p.dtype == np.int32 and p.ndim == 1
  expected = ([tok.bos_id, tok.start_of_turn_id] + tok.encode("user\n") + [tok.visual_id] * n_vis
              + tok.encode(prompt.INSTRUCTION) + [tok.end_of_turn_id] + tok.encode("\n")
              + [tok.start_of_turn_id] + tok.encode("model\n"))
  assert p.tolist() == expected
  assert (p == tok.visual_id).sum() == n_vis
  # Visual placeholders are contiguous, right after "user\n".
  first = int(np.argmax(p == tok.visual_id))
  assert (p[first:first + n_vis] == tok.visual_id).all()
  assert tok.decode(p[first + n_vis:]) == prompt.INSTRUCTION + "\nmodel\n"
  other = prompt.build_prompt(tok, 3, instruction=prompt.PARAPHRASES[0])
  assert tok.decode(other[2 + len(tok.encode("user\n")) + 3:]).startswith(prompt.PARAPHRASES[0])


def test_training_example_alignment(tok):
  n_vis, L = 16, 200
  ex = prompt.build_training_example(tok, CAPTIONS[0], n_vis, L)
  tokens, targets, mask = ex["tokens"], ex["targets"], ex["loss_mask"]
  assert (tokens.dtype, targets.dtype, mask.dtype) == (np.int32, np.int32, np.float32)
  assert tokens.shape == targets.shape == mask.shape == (L,)
  np.testing.assert_array_equal(targets[:-1], tokens[1:])
  masked = targets[mask == 1]
  assert masked[-1] == tok.eos_id and tok.decode(masked) == CAPTIONS[0]
  assert masked.tolist() == tok.encode(CAPTIONS[0]) + [tok.eos_id]
  # Mask is one contiguous run starting at the last prompt position.
  p = prompt.build_prompt(tok, n_vis)
  np.testing.assert_array_equal(tokens[:len(p)], p)
  idx = np.flatnonzero(mask)
  assert idx[0] == len(p) - 1 and (np.diff(idx) == 1).all()
  # Right padding with pad id, no loss there.
  end = len(p) + len(tok.encode(CAPTIONS[0])) + 1
  assert (tokens[end:] == tok.pad_id).all() and (mask[end - 1:] == 0).all()


def test_long_caption_is_cut_but_keeps_eos(tok):
  n_vis = 8
  plen = len(prompt.build_prompt(tok, n_vis))
  L = plen + 10
  ex = prompt.build_training_example(tok, CAPTIONS[0] * 5, n_vis, L)
  assert ex["tokens"][-1] == tok.eos_id and ex["targets"][-2] == tok.eos_id
  assert ex["loss_mask"].sum() == 10  # 9 caption tokens + eos
  assert ex["targets"][ex["loss_mask"] == 1][:-1].tolist() == tok.encode(CAPTIONS[0] * 5)[:9]
  with pytest.raises(ValueError, match=r"max_len=\d+ is too short for the prompt"):
    prompt.build_training_example(tok, "x", n_vis, plen)


def test_paraphrases_sampled_deterministically(tok):
  assert len(prompt.PARAPHRASES) >= 5 and len(set(prompt.INSTRUCTIONS)) == len(prompt.INSTRUCTIONS)
  draw = lambda seed: [prompt.sample_instruction(r) for r in
                       [np.random.default_rng(seed)] for _ in range(60)]
  a, b = draw(0), draw(0)
  assert a == b and set(a) == set(prompt.INSTRUCTIONS)
  assert prompt.sample_instruction(None) == prompt.INSTRUCTION
  # Different instructions give different prompts, same caption targets.
  ex_a = prompt.build_training_example(tok, CAPTIONS[1], 4, 200, np.random.default_rng(1))
  ex_c = prompt.build_training_example(tok, CAPTIONS[1], 4, 200, None)
  assert tok.decode(ex_a["targets"][ex_a["loss_mask"] == 1]) == CAPTIONS[1]
  assert tok.decode(ex_c["targets"][ex_c["loss_mask"] == 1]) == CAPTIONS[1]


QWEN2_PIECES = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
                "<|vision_end|>", "<|video_pad|>")


def test_qwen2_chat_template_text_and_end_token():
  """The "qwen2" layout is Qwen2's chat format with Qwen2-VL's vision markers,
  piece for piece; the caption ends with <|im_end|> (the loss covers it)."""
  import io
  import sentencepiece as spm
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(CAPTIONS * 20 + list(prompt.tokenizer_training_text())
                             + ["system\nYou are a helpful assistant.", "assistant\n"]),
      model_writer=model, vocab_size=350, pad_id=0, unk_id=1, bos_id=3, eos_id=2,
      control_symbols=list(QWEN2_PIECES), byte_fallback=True, character_coverage=1.0,
      normalization_rule_name="identity", remove_extra_whitespaces=False,
      add_dummy_prefix=False, num_threads=1, minloglevel=2)
  tok = tok_lib.Tokenizer(model_proto=model.getvalue(), visual_piece="<|video_pad|>",
                          start_of_turn_piece="<|im_start|>", end_of_turn_piece="<|im_end|>")
  specials = {tok.piece_id(p) for p in QWEN2_PIECES}
  p = prompt.build_prompt(tok, 3, template="qwen2")
  # Render: special ids by name, text runs decoded.
  text, run = "", []
  for i in p.tolist() + [-1]:
    if i in specials or i == -1:
      text += tok.decode(run) + (tok.id_to_piece(i) if i != -1 else "")
      run = []
    else:
      run.append(i)
  assert text == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                  "<|im_start|>user\n<|vision_start|>" + "<|video_pad|>" * 3 + "<|vision_end|>"
                  + prompt.INSTRUCTION + "<|im_end|>\n<|im_start|>assistant\n")
  end = prompt.end_id(tok, "qwen2")
  assert end == tok.piece_id("<|im_end|>") != tok.eos_id
  ex = prompt.build_training_example(tok, CAPTIONS[0], 3, 256, template="qwen2")
  masked = ex["targets"][ex["loss_mask"] == 1]
  assert masked[-1] == end and tok.decode(masked[:-1]) == CAPTIONS[0]
  # Our own SentencePiece models lack Qwen2's pieces: named in the error.
  with pytest.raises(ValueError, match=r"'<\|vision_start\|>' \(vision_start\)"):
    prompt.build_prompt(tok_lib.train_tokenizer(CAPTIONS * 20, vocab_size=350), 3,
                        template="qwen2")
  with pytest.raises(ValueError, match="unknown"):
    prompt.build_prompt(tok, 3, template="llama9")
