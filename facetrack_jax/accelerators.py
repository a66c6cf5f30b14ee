"""Per-chip figures of the accelerators a dry run is judged against.

Vendor figures (dense bf16 peak, HBM, HBM bandwidth, chip-to-chip bandwidth):

- TPU v5e, v5p, v6e: Cloud TPU system-architecture pages
  (cloud.google.com/tpu/docs/v5e, /v5p, /v6e): 197 / 459 / 918 TFLOP/s bf16;
  16 / 95 / 32 GB HBM at 819 / 2,765 / 1,638 GB/s; inter-chip interconnect
  400 GB/s bidirectional (v5e), 4,800 Gbps = 600 GB/s (v5p), 800 GB/s
  bidirectional (v6e). TPU HBM comes in GiB: 16 GB is 16 GiB there.
- NVIDIA H100 SXM, H200 SXM, A100 SXM 80 GB: NVIDIA data sheets: 989 / 989 /
  312 TFLOP/s dense bf16; 80 / 141 / 80 GB at 3.35 / 4.8 / 2.04 TB/s; NVLink
  900 / 900 / 600 GB/s total per GPU. Usable memory is a little under the
  nominal GB (an H200 shows ~139 GiB to a program).

The step-time bound assumes perfect overlap and the full peak: it is a lower
bound, never an estimate of the step time.
"""

from __future__ import annotations

import dataclasses

GiB = 1 << 30


@dataclasses.dataclass(frozen=True)
class Accelerator:
  name: str
  hbm_bytes: float          # usable memory per chip
  bf16_flops: float         # dense peak per chip, FLOP/s
  hbm_bandwidth: float      # bytes/s
  link_bandwidth: float     # chip-to-chip bytes/s (ICI / NVLink), both directions together


ACCELERATORS = {a.name: a for a in (
    Accelerator("v5e", 16 * GiB, 197e12, 819e9, 400e9),
    Accelerator("v5p", 95 * GiB, 459e12, 2765e9, 600e9),
    Accelerator("v6e", 32 * GiB, 918e12, 1638e9, 800e9),
    Accelerator("a100", 79.2 * GiB, 312e12, 2039e9, 600e9),
    Accelerator("h100", 79.6 * GiB, 989e12, 3350e9, 900e9),
    Accelerator("h200", 139.8 * GiB, 989e12, 4800e9, 900e9),
)}


def get(name: str) -> Accelerator:
  if name not in ACCELERATORS:
    raise ValueError(f"--accelerator {name!r} is not known; choose one of {sorted(ACCELERATORS)}")
  return ACCELERATORS[name]


_TPU_KINDS = {"tpu v5 lite": "v5e", "tpu v5e": "v5e", "tpu v5": "v5p", "tpu v5p": "v5p",
              "tpu v6 lite": "v6e", "tpu v6e": "v6e"}


def for_device_kind(kind: str) -> Accelerator | None:
  """The chip a ``jax.Device.device_kind`` names ("TPU v5 lite", "NVIDIA H100
  80GB HBM3", "NVIDIA A100-SXM4-40GB"), or None: a CPU, a chip not in the
  table, or a variant whose peak differs from it (H100 PCIe, H200 NVL)."""
  k = kind.lower()
  if k.startswith("tpu"):
    return ACCELERATORS.get(_TPU_KINDS.get(k, ""))
  if not k.startswith("nvidia") or "nvl" in k or ("h100" in k and "pcie" in k):
    return None
  for name in ("h200", "h100", "a100"):   # every A100 has the same bf16 peak
    if name in k:
      return ACCELERATORS[name]
  return None


def verdict(acc: Accelerator, *, peak_bytes: float, flops: float, link_bytes: float,
            hbm_bytes_read: float = 0.0) -> dict:
  """Fits-in-HBM, and the lower bound on a step's seconds per device:
  ``max(flops / peak, link_bytes / link_bandwidth, hbm_bytes_read / hbm_bandwidth)``."""
  compute_s = flops / acc.bf16_flops
  comm_s = link_bytes / acc.link_bandwidth
  memory_s = hbm_bytes_read / acc.hbm_bandwidth
  bound = max(compute_s, comm_s, memory_s)
  return dict(
      accelerator=acc.name, hbm_gib=acc.hbm_bytes / GiB, peak_gib=peak_bytes / GiB,
      fits=peak_bytes <= acc.hbm_bytes, hbm_used=peak_bytes / acc.hbm_bytes,
      compute_s=compute_s, comm_s=comm_s, hbm_read_s=memory_s, step_s_lower_bound=bound,
      bound_by=("compute" if bound == compute_s else "interconnect" if bound == comm_s
                else "HBM bandwidth"),
      assumptions=(f"{acc.bf16_flops / 1e12:.0f} TFLOP/s bf16 peak, "
                   f"{acc.link_bandwidth / 1e9:.0f} GB/s chip-to-chip, "
                   f"{acc.hbm_bandwidth / 1e9:.0f} GB/s HBM; compute, communication and "
                   "HBM reads fully overlapped; ring collectives"))
