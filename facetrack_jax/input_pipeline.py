"""grain input pipeline: TFDS clips -> fixed-shape host batches -> global arrays.

Training (per host; i / n = this host's data shard / the number of shards)::

    source[i::n]                                  disjoint examples per data shard
      .seed(s).shuffle().repeat()                 reshuffled every epoch
      .random_map(decode, augment, tokenise)      per-example rng from the seed
      .batch(global_batch // n, drop_remainder=True)
      .to_iter_dataset(ReadOptions(num_threads, prefetch_buffer_size))
      [.mp_prefetch(worker_count)]                worker processes (0 = threads only)

Data shards (:func:`facetrack_jax.sharding.data_shards`): the hosts are grouped
by the batch rows their devices hold in the mesh. With the batch split over
every host (the usual case) a shard is a host; where an axis the batch is not
split over spans hosts (``tensor`` across two hosts, ``config.mesh.dcn_shape``),
those hosts hold replicas of the same rows and load identical data (same
examples, same seed, same augmentation).

The iterator is checkpointable: ``it.get_state()`` / ``it.set_state()``, or in
orbax ``checkpoint.DataIterSave(it, shard)`` / ``DataIterRestore(it, shard)``
(one file per data shard; :mod:`facetrack_jax.checkpoint`).

Host batch (L = ``data.max_len``, T/H/S from ``config.model``)::

    frames uint8[B,T,H,H,3]  faces uint8[B,T,S,S,3]  face_mask bool[B,T]
    tokens int32[B,L]  targets int32[B,L]  loss_mask float32[B,L]
    id str[B]                                  (host-side only: to_global drops it)

Eval batches add ``prompt int32[B,P]`` (canonical instruction, for
generation), ``valid bool[B]`` (False on the padding of the last batch),
``face_boxes float32[B,T,4]`` and ``caption`` (str[B], the reference).

Config read: ``config.data.{name, data_dir, tokenizer, chat_template, max_len, batch_size
(global), shuffle_seed, num_threads, prefetch, worker_count, flip_prob,
color_jitter, crop_scale, paraphrase_instructions}`` and ``config.model``.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import grain
import jax
import numpy as np
from jax.sharding import Mesh

from facetrack_jax import augment, caption_supervision, prompt, sharding
from facetrack_jax.models.facetrack import num_visual_tokens

TEXT_FIELDS = ("caption", "id", "video", "source")


def open_source(data_cfg, split: str):
  """The TFDS random-access source of ``split`` (ArrayRecord files written by
  ``data_prep.builder``). ``data_cfg.name`` is the TFDS name with the builder
  config, e.g. "facetrack/synthetic"; ``data_cfg.data_dir`` the build's
  ``--data-dir``. Reads from the files alone (no data_prep import)."""
  import tensorflow_datasets as tfds  # heavy import: only when reading TFDS
  try:
    return tfds.data_source(data_cfg.name, split=split, data_dir=data_cfg.data_dir,
                            download=False)
  except Exception as e:
    raise ValueError(f"cannot open TFDS dataset {data_cfg.name!r} split {split!r} "
                     f"in {data_cfg.data_dir!r}: {e}") from e


# -- one example ----------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ExampleSpec:
  """Expected per-example shapes (from ``config.model``)."""
  num_frames: int
  frame_size: int
  face_size: int

  @classmethod
  def from_config(cls, model_cfg) -> "ExampleSpec":
    return cls(model_cfg.num_frames, model_cfg.frame_size, model_cfg.face_size)


def _text(value) -> str:
  if isinstance(value, np.ndarray) and value.shape == ():
    value = value.item()
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _images(value, field: str, ex_id: str) -> np.ndarray:
  """uint8[T, h, w, 3] from an array, or from a sequence of encoded images."""
  if isinstance(value, np.ndarray) and value.dtype == np.uint8:
    return value
  if isinstance(value, (list, tuple, np.ndarray)) and len(value) and isinstance(
      value[0], (bytes, np.bytes_)):
    import cv2
    frames = [cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR) for b in value]
    if any(f is None for f in frames):
      raise ValueError(f"example {ex_id!r}: field {field!r} holds bytes that are "
                       "not a decodable image")
    return np.stack([f[..., ::-1] for f in frames])  # BGR -> RGB
  raise ValueError(f"example {ex_id!r}: field {field!r} must be uint8 images, got "
                   f"{getattr(value, 'dtype', type(value).__name__)}")


def decode_example(raw: dict, spec: ExampleSpec) -> dict:
  """Source record -> numpy dict with str texts; checks every shape."""
  missing = [k for k in ("frames", "faces", "face_mask", "face_boxes", "caption", "id")
             if k not in raw]
  ex_id = _text(raw["id"]) if "id" in raw else "<no id>"
  if missing:
    raise ValueError(f"example {ex_id!r}: missing field(s) {missing}")
  ex = {k: _text(raw[k]) for k in TEXT_FIELDS if k in raw}
  ex["frames"] = _images(raw["frames"], "frames", ex_id)
  ex["faces"] = _images(raw["faces"], "faces", ex_id)
  ex["face_mask"] = np.asarray(raw["face_mask"]).astype(bool)
  ex["face_boxes"] = np.asarray(raw["face_boxes"], np.float32)
  t, h, s = spec.num_frames, spec.frame_size, spec.face_size
  for field, want in (("frames", (t, h, h, 3)), ("faces", (t, s, s, 3)),
                      ("face_mask", (t,)), ("face_boxes", (t, 4))):
    if ex[field].shape != want:
      raise ValueError(f"example {ex_id!r}: field {field!r} has shape "
                       f"{ex[field].shape}, config.model expects {want}")
  return ex


@dataclasses.dataclass
class TrainTransform(grain.transforms.RandomMap):
  """Decode, augment, tokenise one training example (picklable for workers)."""
  tokenizer: object
  spec: ExampleSpec
  n_visual: int
  max_len: int
  flip_prob: float
  color_jitter: float
  crop_scale: float
  paraphrase: bool
  heads: tuple[str, ...] = ()   # training heads whose targets to add (caption_supervision.py)
  template: str = "gemma"       # prompt.TEMPLATES

  def random_map(self, element, rng: np.random.Generator) -> dict:
    ex = augment.augment(decode_example(element, self.spec), rng,
                         flip_prob=self.flip_prob, color_jitter=self.color_jitter,
                         crop_scale=self.crop_scale)
    text = prompt.build_training_example(self.tokenizer, ex["caption"], self.n_visual,
                                         self.max_len, rng if self.paraphrase else None,
                                         self.template)
    out = dict(frames=ex["frames"], faces=ex["faces"], face_mask=ex["face_mask"], **text,
               id=ex["id"])
    # From the caption as augmented (a flip swaps left/right): event_targets
    # float32[P, E], attribute_targets int32[A].
    out.update(caption_supervision.caption_targets(self.heads, ex["caption"]))
    return out


# -- configuration ---------------------------------------------------------------
def _shard(config, shard) -> sharding.DataShard:
  """``shard``, or this process's data shard of the config's mesh."""
  if shard is None:
    shard = sharding.data_shard(sharding.mesh_from_config(config.mesh))
  if not 0 <= shard.index < shard.count:
    raise ValueError(f"data shard {shard.index} is not in [0, {shard.count})")
  return shard


def _check(config, tokenizer, shard: sharding.DataShard) -> int:
  """Validates config against the tokenizer; returns the per-host batch size."""
  d, m = config.data, config.model
  if tokenizer.visual_id != m.visual_token_id:
    cfg_id = m.visual_token_id
    cfg_piece = (repr(tokenizer.id_to_piece(cfg_id)) if 0 <= cfg_id < tokenizer.vocab_size
                 else "no token of it")
    raise ValueError(
        f"config.model.visual_token_id = {cfg_id} ({cfg_piece}) but tokenizer {tokenizer} "
        f"has its visual placeholder {tokenizer.id_to_piece(tokenizer.visual_id)!r} at id "
        f"{tokenizer.visual_id}: make them agree (--config.model.visual_token_id="
        f"{tokenizer.visual_id}, or name the placeholder: --config.data.visual_piece=...)")
  if tokenizer.vocab_size > m.lm.vocab_size:
    raise ValueError(f"tokenizer {tokenizer} has {tokenizer.vocab_size} pieces, more "
                     f"than config.model.lm.vocab_size = {m.lm.vocab_size}")
  if d.max_len > m.lm.max_len:
    raise ValueError(f"config.data.max_len = {d.max_len} exceeds "
                     f"config.model.lm.max_len = {m.lm.max_len}")
  if d.batch_size % shard.count:
    raise ValueError(f"config.data.batch_size = {d.batch_size} (global) is not "
                     f"divisible by the {shard.count} data shards of the mesh")
  return d.batch_size // shard.count


def _source(config, split, source):
  src = open_source(config.data, split) if source is None else source
  if len(src) == 0:
    raise ValueError(f"split {split!r} of {config.data.name!r} is empty")
  return src


def _read_options(data_cfg) -> grain.ReadOptions:
  return grain.ReadOptions(num_threads=data_cfg.num_threads,
                           prefetch_buffer_size=data_cfg.prefetch)


# -- training ----------------------------------------------------------------------
def make_train_iterator(config, tokenizer, split: str = "train", *, source=None,
                        shard: sharding.DataShard | None = None) -> grain.DatasetIterator:
  """Infinite, shuffled, augmented batches of this host's data shard of ``split``.

  Args:
    source: a random-access source (``__len__``, ``__getitem__`` -> raw dict,
      ``__repr__``) to read instead of the TFDS dataset.
    shard: the data shard to load (default: this process's in the config's
      mesh, :func:`sharding.data_shard`; replica processes load the same).
  """
  d = config.data
  shard = _shard(config, shard)
  si, sc = shard.index, shard.count
  host_batch = _check(config, tokenizer, shard)
  ds = grain.MapDataset.source(_source(config, split, source))
  if len(ds) < sc:
    raise ValueError(f"split {split!r} has {len(ds)} examples for {sc} data shards")
  ds = ds[:len(ds) // sc * sc][si::sc]  # equal, disjoint shares
  seed = int(np.random.SeedSequence([d.shuffle_seed, si]).generate_state(1)[0])
  ds = ds.seed(seed).shuffle().repeat()
  ds = ds.random_map(TrainTransform(
      tokenizer=tokenizer, spec=ExampleSpec.from_config(config.model),
      n_visual=num_visual_tokens(config.model), max_len=d.max_len,
      flip_prob=d.flip_prob, color_jitter=d.color_jitter, crop_scale=d.crop_scale,
      paraphrase=d.paraphrase_instructions,
      heads=tuple(caption_supervision.weights(config)),
      template=d.get("chat_template", "gemma")))
  ds = ds.batch(host_batch, drop_remainder=True)
  it_ds = ds.to_iter_dataset(_read_options(d))
  if d.worker_count > 0:
    from absl import flags  # workers read absl flags; outside app.run, mark parsed
    if not flags.FLAGS.is_parsed():
      flags.FLAGS.mark_as_parsed()
    it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=d.worker_count))
  return iter(it_ds)


# -- evaluation ---------------------------------------------------------------------
class _PaddedShard:
  """This host's examples of ``src`` (every pc-th from pi), then empty dicts
  (padding) up to ``length``, so that all hosts yield the same number of full
  batches. (Not None: grain reads None as "filtered out".)"""

  def __init__(self, src, pi: int, pc: int, length: int):
    self._src, self._pi, self._pc, self._len = src, pi, pc, length

  def __len__(self):
    return self._len

  def __getitem__(self, i: int):
    j = self._pi + i * self._pc
    return self._src[j] if j < len(self._src) else {}

  def __repr__(self):
    return f"_PaddedShard({self._src!r}, {self._pi}/{self._pc}, len={self._len})"


@dataclasses.dataclass
class EvalTransform(grain.transforms.Map):
  tokenizer: object
  spec: ExampleSpec
  n_visual: int
  max_len: int
  template: str = "gemma"

  def map(self, element) -> dict:
    pad = not element  # padding: all zeros, invalid
    if pad:
      t, h, s = self.spec.num_frames, self.spec.frame_size, self.spec.face_size
      ex = dict(frames=np.zeros((t, h, h, 3), np.uint8), faces=np.zeros((t, s, s, 3), np.uint8),
                face_mask=np.zeros((t,), bool), face_boxes=np.zeros((t, 4), np.float32),
                caption="", id="")
    else:
      ex = decode_example(element, self.spec)
    text = prompt.build_training_example(self.tokenizer, ex["caption"], self.n_visual,
                                         self.max_len, template=self.template)
    if pad:
      text["loss_mask"][:] = 0.0
    return dict(frames=ex["frames"], faces=ex["faces"], face_mask=ex["face_mask"],
                face_boxes=ex["face_boxes"], **text,
                prompt=prompt.build_prompt(self.tokenizer, self.n_visual,
                                           template=self.template),
                valid=np.bool_(not pad), id=ex["id"], caption=ex["caption"])


def make_eval_batches(config, tokenizer, split: str, *, source=None,
                      shard: sharding.DataShard | None = None) -> grain.IterDataset:
  """Every example of this host's data shard of ``split`` (every
  ``shard.count``-th from ``shard.index``, :func:`eval_shard_size` of them)
  once, in order, canonical instruction, no augmentation; the last batch is
  padded (``valid`` False). Every host yields the same number of batches.
  Iterate it as often as needed.
  """
  d = config.data
  shard = _shard(config, shard)
  host_batch = _check(config, tokenizer, shard)
  src = _source(config, split, source)
  per_host = math.ceil(len(src) / shard.count)
  length = math.ceil(per_host / host_batch) * host_batch
  ds = grain.MapDataset.source(_PaddedShard(src, shard.index, shard.count, length))
  ds = ds.map(EvalTransform(tokenizer=tokenizer, spec=ExampleSpec.from_config(config.model),
                            n_visual=num_visual_tokens(config.model), max_len=d.max_len,
                            template=d.get("chat_template", "gemma")))
  return ds.batch(host_batch).to_iter_dataset(_read_options(d))


def eval_shard_size(num_examples: int, shard: sharding.DataShard) -> int:
  """How many real (valid) examples of a split of ``num_examples`` the data
  shard ``shard`` captions in :func:`make_eval_batches`."""
  return len(range(shard.index, num_examples, shard.count))


# -- host -> device --------------------------------------------------------------------
@functools.lru_cache(maxsize=16)
def _num_data_shards(mesh: Mesh) -> int:
  return sharding.data_shard(mesh).count


def to_global(batch_np: dict, mesh: Mesh) -> dict[str, jax.Array]:
  """Host-local numeric arrays -> global jax.Arrays, batch axis sharded over
  ("data", "fsdp"); text fields (id, caption) stay on the host and are dropped.

  The host batch is this process's data shard (:func:`sharding.data_shard`):
  the global batch has ``count ×`` its rows; processes of one shard (replicas)
  must pass identical rows, as :func:`make_train_iterator` gives them."""
  out = {}
  count = _num_data_shards(mesh)
  for name, x in batch_np.items():
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
      continue
    spec = sharding.named_sharding(mesh, ("batch",) + (None,) * (x.ndim - 1))
    try:
      out[name] = jax.make_array_from_process_local_data(
          spec, x, (x.shape[0] * count,) + x.shape[1:])
    except ValueError as e:
      raise ValueError(f"to_global: batch field {name!r} of shape {x.shape} cannot be "
                       f"sharded over mesh {dict(mesh.shape)}: {e}") from e
  return out
