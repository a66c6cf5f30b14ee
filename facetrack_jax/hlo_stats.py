"""What a compiled (SPMD-partitioned, per-device) HLO module communicates.

    stats = hlo_stats.collectives(compiled.as_text())
    stats["all-gather"] == {"ops": 13, "executed": 368, "result_bytes": ..., "link_bytes": ...}

Every collective instruction (all-gather, reduce-scatter, all-reduce,
all-to-all, collective-permute; ``-start`` async forms counted once, ``-done``
not) is counted twice: ``ops``, the instructions in the module text, and
``executed``, how often they run in one call — an op inside a ``while`` body
runs once per iteration (XLA's ``known_trip_count``; scanned layers put their
per-layer all-gathers there). Bytes are per device:

- ``result_bytes``: the size of each op's result, summed over executions;
- ``link_bytes``: what one device sends in a ring algorithm over a group of
  n devices: all-gather ``out·(n-1)/n``, reduce-scatter ``out·(n-1)``,
  all-reduce ``2·size·(n-1)/n``, all-to-all ``size·(n-1)/n``,
  collective-permute ``size``. A lower bound on the traffic of any algorithm
  that moves the data once.

Replica groups are read in all three HLO spellings (``{{0,1},{2,3}}``,
``[2,4]<=[8]`` iota lists, and ``mesh[...] {'axis'}`` named axes).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator

KINDS = ("all-gather", "reduce-scatter", "all-reduce", "all-to-all", "collective-permute")
_DTYPE_BYTES = {"pred": 1, "s4": 0.5, "u4": 0.5, "s8": 1, "u8": 1, "f8e4m3fn": 1, "f8e5m2": 1,
                "s16": 2, "u16": 2, "f16": 2, "bf16": 2, "s32": 4, "u32": 4, "f32": 4,
                "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16}
_COMP_START = re.compile(r"^(ENTRY )?%?([\w.\-]+) (\(.*\) -> .*)?\{\s*$")
_INSTR = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = (.*)$")
_ARRAY = re.compile(r"\b([a-z]+\d*[a-z0-9]*)\[([\d,]*)\]")
_CALLEES = re.compile(r"\b(?:calls|to_apply|body|condition)=%?([\w.\-]+)")
_CALLEE_LISTS = re.compile(r"\b(?:branch_computations|called_computations)=\{([^}]*)\}")
_TRIP = re.compile(r'"known_trip_count":\{"n":"(\d+)"\}')


def _split_shape(rest: str) -> tuple[str, str]:
  """``"(f32[2]{0}, s32[]) opcode(args...)"`` -> (shape text, the remainder)."""
  if rest.startswith("("):
    depth = 0
    for i, ch in enumerate(rest):
      depth += ch == "("
      depth -= ch == ")"
      if depth == 0:
        return rest[:i + 1], rest[i + 1:].lstrip()
  shape, _, tail = rest.partition(" ")
  return shape, tail


def shape_bytes(shape: str) -> float:
  """Bytes of an HLO shape string (tuples summed; layouts ignored)."""
  total = 0.0
  for dtype, dims in _ARRAY.findall(shape):
    if dtype not in _DTYPE_BYTES:
      continue
    n = math.prod(int(d) for d in dims.split(",") if d) if dims else 1
    total += n * _DTYPE_BYTES[dtype]
  return total


def _last_tuple_element(shape: str) -> str:
  arrays = _ARRAY.findall(shape)
  return f"{arrays[-1][0]}[{arrays[-1][1]}]" if arrays else shape


def group_size(attrs: str, num_partitions: int) -> int:
  """Devices per replica group of a collective, from its attribute text."""
  m = re.search(r"replica_groups=mesh\[([^\]]*)\]\s*\{([^}]*)\}", attrs)
  if m:
    sizes = dict((k.strip("' "), int(v)) for k, v in
                 (kv.split("=") for kv in m.group(1).split(",") if "=" in kv))
    names = [n.strip("' ") for n in m.group(2).split(",") if n.strip()]
    return math.prod(sizes[n] for n in names) if names else 1
  m = re.search(r"replica_groups=\[(\d+),(\d+)\]<=", attrs)
  if m:
    return int(m.group(2))
  m = re.search(r"replica_groups=\{\{([^}]*)\}", attrs)
  if m:
    return len([x for x in m.group(1).split(",") if x.strip()])
  m = re.search(r"source_target_pairs=", attrs)
  return 2 if m else num_partitions     # {} / absent: every device in one group


def _computations(text: str) -> Iterator[tuple[str, bool, list[str]]]:
  name, entry, lines = None, False, []
  for line in text.splitlines():
    if name is None:
      m = _COMP_START.match(line)
      if m and not line.startswith("HloModule"):
        name, entry, lines = m.group(2), bool(m.group(1)), []
    elif line.startswith("}"):
      yield name, entry, lines
      name = None
    else:
      lines.append(line)


def collectives(hlo_text: str) -> dict:
  """Per kind: ``ops``, ``executed``, ``result_bytes``, ``link_bytes`` (per
  device, per call); plus ``"largest"``: the ten ops moving the most bytes,
  and ``"unknown_trip_counts"``: while loops whose count XLA did not know
  (their bodies are counted once)."""
  m = re.search(r"num_partitions=(\d+)", hlo_text)
  num_partitions = int(m.group(1)) if m else 1
  comps = {n: (e, ls) for n, e, ls in _computations(hlo_text)}
  calls: dict[str, list[tuple[str, int]]] = {n: [] for n in comps}
  ops: list[tuple[str, str, str, str, int]] = []      # (comp, name, kind, shape, group)
  unknown = 0
  for comp, (_, lines) in comps.items():
    for line in lines:
      im = _INSTR.match(line)
      if not im:
        continue
      shape, tail = _split_shape(im.group(2))
      opcode = tail.split("(", 1)[0].strip()
      mult = 1
      if opcode == "while":
        t = _TRIP.search(tail)
        mult = int(t.group(1)) if t else 1
        unknown += t is None
      for callee in _CALLEES.findall(tail):
        calls[comp].append((callee, mult))
      for group in _CALLEE_LISTS.findall(tail):
        calls[comp] += [(c.strip().lstrip("%"), 1) for c in group.split(",") if c.strip()]
      kind = opcode.removesuffix("-start")
      if kind in KINDS:
        if opcode.endswith("-start") and kind in ("all-gather", "collective-permute"):
          shape = _last_tuple_element(shape)        # (operand, result) tuple
        ops.append((comp, im.group(1), kind, shape, group_size(tail, num_partitions)))

  callers: dict[str, list[tuple[str, int]]] = {}
  for caller, callees in calls.items():
    for callee, mult in callees:
      callers.setdefault(callee, []).append((caller, mult))
  runs: dict[str, int] = {}

  def executions(comp: str) -> int:      # HLO call graphs are acyclic
    if comp not in runs:
      runs[comp] = 1 if comps.get(comp, (False,))[0] else sum(
          executions(caller) * mult for caller, mult in callers.get(comp, ()))
    return runs[comp]

  out = {k: dict(ops=0, executed=0, result_bytes=0.0, link_bytes=0.0) for k in KINDS}
  rows = []
  for comp, name, kind, shape, n in ops:
    size, runs_here = shape_bytes(shape), executions(comp)
    factor = {"all-gather": (n - 1) / n, "reduce-scatter": n - 1,
              "all-reduce": 2 * (n - 1) / n, "all-to-all": (n - 1) / n,
              "collective-permute": 1.0}[kind]
    d = out[kind]
    d["ops"] += 1
    d["executed"] += runs_here
    d["result_bytes"] += size * runs_here
    d["link_bytes"] += size * factor * runs_here
    rows.append(dict(name=name, kind=kind, shape=re.sub(r"\{[^}]*\}", "", shape)[:120],
                     group=n, executed=runs_here, link_bytes=size * factor * runs_here,
                     in_loop=runs_here > 1))
  rows.sort(key=lambda r: -r["link_bytes"])
  out["largest"] = rows[:10]
  out["unknown_trip_counts"] = unknown
  return out


def total_link_bytes(stats: dict) -> float:
  return sum(stats[k]["link_bytes"] for k in KINDS)


if __name__ == "__main__":   # python -m facetrack_jax.hlo_stats module.txt
  import sys
  print(json.dumps(collectives(open(sys.argv[1]).read()), indent=1))
