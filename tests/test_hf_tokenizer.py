"""HF tokenizer.json (byte-level BPE, Qwen2 style) behind the Tokenizer interface.

The tokenizer.json is made here (``hf_tokenizer.train_byte_level_bpe``: Qwen2's
normaliser, split pattern, byte-level decoder and its 14 special tokens in
Qwen2's order); nothing is downloaded. Parity: the same ids as transformers'
fast tokenizer on all FEC-Bench captions of ../shared.
"""

import json
import pickle

import numpy as np
import pytest

from facetrack_jax import hf_tokenizer, input_pipeline, prompt
from facetrack_jax import tokenizer as tok_lib
from tests.conftest import ROOT, SHARED

FEC = SHARED / "fecbench" / "test_dev_half.json"


def _fec_captions():
  if not FEC.is_file():
    pytest.skip(f"{FEC} absent (the shared FEC-Bench captions are not in a fresh clone)")
  return [d["caption"] for d in json.loads(FEC.read_text())]


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
  d = tmp_path_factory.mktemp("qwen_tok")
  texts = ["He smiles, then frowns and turns his head to the left.",
           "A young woman with long black hair raises her eyebrows."] * 20
  hf_tokenizer.train_byte_level_bpe(texts, 400, d / "tokenizer.json")
  return d


def test_parity_with_transformers_on_every_fecbench_caption(tmp_path):
  captions = _fec_captions()
  transformers = pytest.importorskip("transformers")
  hf_tokenizer.train_byte_level_bpe(captions, 1000, tmp_path / "tokenizer.json")
  ours = tok_lib.load(tmp_path)   # a directory holding tokenizer.json
  assert isinstance(ours, hf_tokenizer.HFTokenizer) and ours.family == "qwen2"
  ref = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
  assert len(captions) == 398
  bad = [c for c in captions if ours.encode(c) != ref(c, add_special_tokens=False)["input_ids"]]
  assert not bad, f"{len(bad)} of {len(captions)} captions differ, e.g. {bad[0]!r}"
  assert all(ours.decode(ours.encode(c)) == c for c in captions)
  assert all(ours.decode(ours.encode(c)) == ref.decode(ref(c)["input_ids"]) for c in captions[:50])
  # Qwen2's special tokens sit after the 1000 learned pieces, in Qwen2's order.
  assert [ours.piece_id(p) for p in hf_tokenizer.QWEN2_SPECIAL] == list(range(1000, 1014))
  assert (ours.visual_id, ours.eos_id, ours.start_of_turn_id, ours.end_of_turn_id) == (
      1013, 1000, 1001, 1002)


def test_text_never_forges_special_tokens(qwen_dir):
  tok = tok_lib.load(qwen_dir / "tokenizer.json")
  transformers = pytest.importorskip("transformers")
  ref = transformers.PreTrainedTokenizerFast(
      tokenizer_file=str(qwen_dir / "tokenizer.json"), split_special_tokens=True)
  for s in ["say <|video_pad|> and <|im_end|>", "émigré 😀 中文\n\n\ttab ", "<|endoftext|>"]:
    ids = tok.encode(s)
    assert ids == ref(s, add_special_tokens=False)["input_ids"]
    assert tok.visual_id not in ids and tok.end_of_turn_id not in ids and tok.eos_id not in ids
    assert tok.decode(ids) == s
  # decode cuts at eos and drops special ids.
  ids = tok.encode("ab")
  assert tok.decode([tok.start_of_turn_id] + ids + [tok.eos_id] + tok.encode("zz")) == "ab"
  again = pickle.loads(pickle.dumps(tok))   # grain workers pickle it
  assert again.encode("a smile") == tok.encode("a smile") and again.path == tok.path


def test_qwen2_prompt_and_config_id_checks(qwen_dir):
  tok = tok_lib.load(qwen_dir)
  ids = prompt.build_prompt(tok, 3, template="qwen2")
  want_start = [tok.piece_id("<|im_start|>")] + tok.encode("system\nYou are a helpful assistant.")
  assert list(ids[:len(want_start)]) == want_start
  vis = list(ids).index(tok.piece_id("<|vision_start|>"))
  assert list(ids[vis:vis + 5]) == [tok.piece_id(p) for p in (
      "<|vision_start|>", "<|video_pad|>", "<|video_pad|>", "<|video_pad|>", "<|vision_end|>")]
  ex = prompt.build_training_example(tok, "he smiles", 3, 96, template="qwen2")
  last = int(ex["loss_mask"].nonzero()[0][-1])
  assert ex["targets"][last] == tok.piece_id("<|im_end|>")
  with pytest.raises(ValueError, match="starts with a bos token"):
    prompt.build_prompt(tok, 3, template="gemma")
  # The config's visual id is checked against the tokenizer's, both named.
  config = _paper_tiny()
  config.model.visual_token_id = tok.visual_id
  input_pipeline._check(config, tok, input_pipeline.sharding.DataShard(0, 1, True, (0,)))
  config.model.visual_token_id = tok.piece_id("<|image_pad|>")
  with pytest.raises(ValueError, match=r"visual_token_id = \d+ \('<\|image_pad\|>'\) but "
                     r"tokenizer .* placeholder '<\|video_pad\|>' at id \d+"):
    input_pipeline._check(config, tok, input_pipeline.sharding.DataShard(0, 1, True, (0,)))
  # ... and another placeholder can be named by config.
  config.data.tokenizer, config.data.visual_piece = str(qwen_dir), "<|image_pad|>"
  assert tok_lib.from_config(config.data).visual_id == config.model.visual_token_id


def test_bad_tokenizers_named(tmp_path, qwen_dir):
  with pytest.raises(FileNotFoundError, match="neither tokenizer.json nor tokenizer.model"):
    tok_lib.load(tmp_path)
  (tmp_path / "bad.json").write_text("{not json")
  with pytest.raises(ValueError, match="bad.json: not a tokenizers tokenizer.json"):
    tok_lib.load(tmp_path / "bad.json")
  with pytest.raises(ValueError, match=r"no special token '<\|nope\|>' \(visual\)"):
    tok_lib.load(qwen_dir, visual_piece="<|nope|>")
  # A tokenizer of no known family must name its special tokens.
  with pytest.raises(ValueError, match="family unknown.*no eos token known"):
    hf_tokenizer.train_byte_level_bpe(["a b c"] * 5, 300, special_tokens=("<eos>",))


def _paper_tiny():
  import importlib.util
  spec = importlib.util.spec_from_file_location("cfg_paper_tiny", ROOT / "configs" / "paper_tiny.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.get_config()


def test_tokenizer_cli_writes_tokenizer_json(tmp_path):
  (tmp_path / "ann.json").write_text(json.dumps([{"caption": "he smiles and nods."}] * 10))
  tok_lib.main(["train", "--captions", str(tmp_path / "ann.json"), "--vocab-size", "300",
                "--out", str(tmp_path / "t" / "tokenizer.json")])
  tok = tok_lib.load(tmp_path / "t")
  assert tok.decode(tok.encode("he smiles")) == "he smiles"
  assert np.all(np.asarray(tok.encode("he smiles")) < tok.visual_id)


def test_llama3_names_and_a_named_visual_placeholder():
  special = ("<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
             "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")
  with pytest.raises(ValueError, match=r"family llama3\): no visual token known"):
    hf_tokenizer.train_byte_level_bpe(["a b c"] * 5, 300, special_tokens=special)
  tok = hf_tokenizer.train_byte_level_bpe(["a b c"] * 5, 300, special_tokens=special,
                                          visual_piece="<|reserved_special_token_0|>")
  base = tok.vocab_size - len(special)
  assert tok.family == "llama3"
  assert (tok.bos_id, tok.eos_id, tok.visual_id, tok.start_of_turn_id, tok.end_of_turn_id) == (
      base, base + 1, base + 2, base + 3, base + 5)
