"""Training config of the one-command demo: the tiny model on the synthetic set.

    python -m facetrack_jax.train --config configs/tiny_synthetic.py --workdir W \
        --config.data.data_dir=D --config.data.tokenizer=T.model

The model config is ``configs/tiny.py``'s; override any field on the command
line (``--config.train.num_steps=50``).
"""

import importlib.util
import pathlib

import ml_collections


def _tiny():
  spec = importlib.util.spec_from_file_location(
      "configs_tiny", pathlib.Path(__file__).with_name("tiny.py"))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def get_config() -> ml_collections.ConfigDict:
  config = _tiny().get_config()  # model, mesh, seed

  config.data = ml_collections.ConfigDict(dict(
      name="facetrack/synthetic",   # TFDS name: builder/config (data_prep.builder)
      data_dir="data/tfds",         # TFDS data_dir holding the built set
      tokenizer="data/tokenizer.model",   # SentencePiece .model, tokenizer.json, or a
                                          # directory holding one (any epath: gs:// too)
      visual_piece="",              # the visual placeholder's name ("": the tokenizer's
                                    # default: <visual>, Qwen2's <|video_pad|>)
      chat_template="gemma",        # facetrack_jax/prompt.py: TEMPLATES ("gemma" | "qwen2")
      max_len=256,                  # L: prompt (incl. visual tokens) + caption
      batch_size=16,                # global, over all processes
      shuffle_seed=0,
      num_threads=2,
      prefetch=4,
      worker_count=0,               # 0: threads only (fastest on few cores)
      flip_prob=0.5,
      color_jitter=0.1,
      crop_scale=0.9,
      paraphrase_instructions=True,
  ))

  config.train = ml_collections.ConfigDict(dict(
      num_steps=1000,
      learning_rate=1e-3,
      warmup_steps=50,
      end_lr_ratio=0.1,             # cosine decays to learning_rate * this
      b1=0.9, b2=0.95, eps=1e-8,
      weight_decay=0.01,            # on matrices only
      clip_norm=1.0,                # global-norm clipping (0: off)
      grad_accum=1,                 # micro-batches per step (same update as one big batch)
      # Weight of the caption-derived event loss (needs model.event_head;
      # facetrack_jax/event_supervision.py). 0: captions only, as the paper.
      event_loss_weight=0.0,
      # Weight of the same loss on the face tower's output (needs
      # model.face_event_head; facetrack_jax/face_event_supervision.py).
      face_event_loss_weight=0.0,
      # Weight of the caption-derived appearance loss (needs model.attribute_head;
      # facetrack_jax/attribute_supervision.py).
      attribute_loss_weight=0.0,
      # Weight of the same loss on the face tower's output (needs
      # model.face_attribute_head; facetrack_jax/face_attribute_supervision.py).
      face_attribute_loss_weight=0.0,
      # Where the LM head runs: "loss" (text positions only, gathered; no fp32
      # [B, L, V] logits) or "all" (every position; the reference).
      logits_at="loss",
      # Parameter groups that train (runs of dotted path components, "*" = all);
      # the rest is frozen and keeps no optimizer state. Stage 1 of the paper
      # (projectors): ("global_stream", "face_stream", "time_embedding");
      # stage 2: those + "lm"; add "vit" / "face_vit" to tune the encoders.
      trainable=("*",),
      log_every=1,
      remote_log_every_s=30.0,      # a gs:// metrics.jsonl is rewritten at most this often
                                    # (and at each checkpoint; GCS cannot append)
      checkpoint_every=200,
      keep_checkpoints=3,
      async_checkpointing=True,
      log_example_ids=False,        # W/example_ids/process_<i>.jsonl (tests)
      # The caption loss on every example of eval_split, teacher-forced, logged as
      # eval_loss every eval_every steps and at the end (0: never).
      eval_every=0,
      eval_split="test",
      # jax.profiler trace of steps profile_start_step+1 .. +profile_num_steps into
      # W/tb/plugins/profile (TensorBoard's Profile tab); 0: off. Process 0 only
      # unless profile_all_processes (facetrack_jax/profiling.py).
      profile_start_step=0,
      profile_num_steps=3,
      profile_all_processes=False,
  ))

  # Optional safetensors checkpoints to start from ("" = fresh init): HF
  # save_pretrained directories (or .safetensors files) of a SiglipVisionModel
  # (vit, face_vit) and a Qwen2/Llama ForCausalLM (lm). checkpoint: a training
  # run's checkpoints directory whose latest params replace the whole init
  # (a fresh optimizer; e.g. stage 2 from stage 1), exclusive with the others.
  config.init = ml_collections.ConfigDict(dict(vit="", face_vit="", lm="", checkpoint=""))

  # Multi-host: every process runs the same command. Empty / 0 / -1 fall back
  # to JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID; auto=True
  # lets jax.distributed detect the cluster (TPU pods, SLURM).
  config.distributed = ml_collections.ConfigDict(dict(
      coordinator="", num_processes=0, process_id=-1, auto=False))
  return config
