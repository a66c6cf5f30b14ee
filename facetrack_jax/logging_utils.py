"""Training metrics: TensorBoard event files in ``<workdir>/tb`` and one JSON
object per logged step in ``<workdir>/metrics.jsonl``. Written by process 0
only (every process computes the same, replicated metrics)."""

from __future__ import annotations

import json
import math
import os
import sys

import jax

from facetrack_jax import paths


def _summary_writer(logdir: str):
  """``tensorboardX.SummaryWriter``. tensorboardX imports torch whenever it is
  installed (only to accept torch tensors; ~5 s) — hidden here, scalars need
  no torch."""
  if "torch" in sys.modules:
    from tensorboardX import SummaryWriter
  else:
    sys.modules["torch"] = None  # makes `import torch` raise ImportError
    try:
      from tensorboardX import SummaryWriter
    finally:
      del sys.modules["torch"]
  return SummaryWriter(logdir)


def read_metrics(path) -> list[dict]:
  """All records of a ``metrics.jsonl`` (a torn last line is ignored)."""
  return paths.read_jsonl(path)


class MetricWriter:
  """``write(step, metrics)`` → TensorBoard scalars + a metrics.jsonl line
  (``workdir``: local or ``gs://``; :mod:`facetrack_jax.paths`). A key
  ``eval_<name>`` is the TensorBoard scalar ``eval/<name>``, any other key
  ``train/<key>``.

  ``resume_step``: records after it (from a run killed after its last
  checkpoint) are dropped from metrics.jsonl, so the file always describes
  the run that continues from the checkpoint.
  """

  def __init__(self, workdir, *, resume_step: int = 0, enabled: bool | None = None,
               remote_every_s: float = 30.0):
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self.path = paths.resolve(workdir) / "metrics.jsonl"
    self._tb = None
    self._log = None
    if not self.enabled:
      return
    self._log = paths.JsonlLog(self.path, keep_step=resume_step,
                               remote_every_s=remote_every_s)
    self._tb = _summary_writer(str(paths.resolve(workdir) / "tb"))

  def write(self, step: int, metrics: dict) -> None:
    if not self.enabled:
      return
    rec = {"step": int(step)}
    for k, v in metrics.items():
      v = float(v)
      rec[k] = v if math.isfinite(v) else str(v)
      tag = f"eval/{k[5:]}" if k.startswith("eval_") else f"train/{k}"
      self._tb.add_scalar(tag, v, int(step))
    self._log.write(rec)

  def flush(self) -> None:
    """Makes metrics.jsonl hold every step written (called at each checkpoint)."""
    if self._log is not None:
      self._log.flush()

  def close(self) -> None:
    if self._log is not None:
      self._log.close()
      self._log = None
    if self._tb is not None:
      self._tb.close()
      self._tb = None


# -- HParams (the sweep) ---------------------------------------------------------------
def _hparam_value(v):
  """A scalar TensorBoard's HParams tab can show: bool, float or str."""
  if isinstance(v, bool) or isinstance(v, str):
    return v
  if isinstance(v, (int, float)):
    return float(v)
  return str(v)


def write_hparams(logdir: str | os.PathLike, sessions: list[dict],
                  metric_tags: list[str]) -> None:
  """TensorBoard HParams summaries of a sweep, so its runs compare in the
  HParams tab: ``logdir`` gets the experiment (every hparam with the values
  it takes, the metric tags), ``logdir/<name>`` one session per run (its
  hparams, the metrics as scalars at its last step, success or failure).

  ``sessions``: ``[{"name", "hparams": {key: value}, "metrics": {tag: float},
  "step": int, "failed": bool}]``; values of other types are written as str.
  """
  from google.protobuf import struct_pb2
  from tensorboardX.proto import api_pb2, plugin_hparams_pb2
  from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata

  def summary(tag: str, **data) -> Summary:
    content = plugin_hparams_pb2.HParamsPluginData(version=0, **data)
    meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(
        plugin_name="hparams", content=content.SerializeToString()))
    return Summary(value=[Summary.Value(tag=tag, metadata=meta)])

  values: dict[str, list] = {}
  for s in sessions:
    for k, v in s["hparams"].items():
      v = _hparam_value(v)
      if v not in values.setdefault(k, []):
        values[k].append(v)
  infos = []
  for k, vs in values.items():
    kinds = {type(v) for v in vs}
    if kinds == {bool}:
      kind = "DATA_TYPE_BOOL"
    elif kinds == {float}:
      kind = "DATA_TYPE_FLOAT64"
    else:  # mixed: all as strings
      kind, vs = "DATA_TYPE_STRING", [str(v) for v in vs]
      for s in sessions:
        if k in s["hparams"]:
          s["hparams"][k] = str(_hparam_value(s["hparams"][k]))
    domain = struct_pb2.ListValue()
    domain.extend(sorted(set(vs)))
    infos.append(api_pb2.HParamInfo(name=k, type=api_pb2.DataType.Value(kind),
                                    domain_discrete=domain))
  experiment = api_pb2.Experiment(
      hparam_infos=infos,
      metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=t)) for t in metric_tags])
  with _summary_writer(str(logdir)) as w:
    w.file_writer.add_summary(summary("_hparams_/experiment", experiment=experiment))
  for s in sessions:
    start = plugin_hparams_pb2.SessionStartInfo()
    for k, v in s["hparams"].items():
      v = _hparam_value(v)
      if isinstance(v, bool):
        start.hparams[k].bool_value = v
      elif isinstance(v, float):
        start.hparams[k].number_value = v
      else:
        start.hparams[k].string_value = v
    status = "STATUS_FAILURE" if s.get("failed") else "STATUS_SUCCESS"
    with _summary_writer(str(paths.resolve(logdir) / s["name"])) as w:
      w.file_writer.add_summary(summary("_hparams_/session_start_info",
                                        session_start_info=start))
      for tag, v in s.get("metrics", {}).items():
        w.add_scalar(tag, float(v), int(s.get("step", 0)))
      w.file_writer.add_summary(summary("_hparams_/session_end_info", session_end_info=(
          plugin_hparams_pb2.SessionEndInfo(status=api_pb2.Status.Value(status)))))
