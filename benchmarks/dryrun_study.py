r"""Layout study: the paper config's train step compiled for fake meshes of
64 and 256 devices, a few meshes × remat policies (``facetrack_jax.dryrun``).

    python -m benchmarks.dryrun_study [--devices 64,256] [--remat none,full,...] \
        [--out benchmarks/results/dryrun_paper]

Each point runs ``python -m facetrack_jax.dryrun`` in its own process (the
fake device count is fixed when JAX starts); a finished point (its JSON in
``<out>_points/`` exists) is skipped, so an interrupted study resumes. Writes ``<out>.json``
(every report) and ``<out>.md`` (the table: per-device state, temporaries,
peak, collective bytes, which of v5e / v5p / H100 it fits, the step-time
lower bound on v5p, compile seconds). Global batch = devices (one example
per device of the data × fsdp axes when tensor = 1).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys

from facetrack_jax import accelerators, dryrun, hlo_stats

MESHES = {
    64: ("fsdp=64", "data=2,fsdp=32", "fsdp=16,tensor=4"),
    256: ("fsdp=256", "data=2,fsdp=128", "data=4,fsdp=64", "fsdp=64,tensor=4"),
}
JUDGE = ("v5e", "v5p", "h100")
GiB = 1 << 30


def _point(devices: int, mesh: str, remat: str, outdir: pathlib.Path) -> dict:
  name = f"d{devices}_{mesh.replace(',', '_').replace('=', '')}_{remat}"
  path = outdir / f"{name}.json"
  if not path.exists():
    cmd = [sys.executable, "-m", "facetrack_jax.dryrun", "--config", "configs/paper.py",
           f"--devices={devices}", f"--mesh={mesh}", "--step=train", f"--batch={devices}",
           f"--config.model.remat={remat}", f"--out={path}"]
    print(" ".join(cmd), flush=True)
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
      return dict(name=name, devices=devices, mesh=mesh, remat=remat,
                  error=res.stderr.strip().splitlines()[-1] if res.stderr.strip() else "failed")
  report = json.loads(path.read_text())
  report.update(name=name, devices=devices, mesh_arg=mesh, remat=remat)
  return report


def _row(r: dict) -> str:
  if "error" in r:
    return f"| {r['devices']} | `{r['mesh']}` | {r['remat']} | error: {r['error'][:80]} |"
  t = r["train"]
  state = t["state_bytes_per_device"]
  mem = t["memory"]
  link = hlo_stats.total_link_bytes(t["collectives"])
  fits = [a for a in JUDGE if mem["peak_estimate"] <= accelerators.get(a).hbm_bytes]
  bound = accelerators.verdict(accelerators.get("v5p"), peak_bytes=mem["peak_estimate"],
                               flops=t["flops"]["model_per_device"], link_bytes=link)
  return (f"| {r['devices']} | `{r['mesh_arg']}` | {r['remat']} | "
          f"{(state['params'] + state['optimizer']) / GiB:.2f} | "
          f"{t['params_plus_optimizer_vs_analytic']:.3f} | {mem['temporaries'] / GiB:.2f} | "
          f"{mem['peak_estimate'] / GiB:.2f} | {link / GiB:.1f} | "
          f"{', '.join(fits) or 'none'} | {bound['step_s_lower_bound'] * 1e3:.0f} "
          f"({bound['bound_by']}) | {t['compile_s']:.0f} |")


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--devices", default="64,256")
  p.add_argument("--remat", default="none,full,save_dot_except_mlp")
  p.add_argument("--out", default="benchmarks/results/dryrun_paper")
  args = p.parse_args(argv)
  out = pathlib.Path(args.out)
  points = out.parent / f"{out.name}_points"      # one JSON per point (not committed)
  points.mkdir(parents=True, exist_ok=True)
  reports = [_point(d, mesh, remat, points)
             for d in (int(x) for x in args.devices.split(","))
             for mesh in MESHES[d] for remat in args.remat.split(",")]
  out.with_suffix(".json").write_text(json.dumps(reports, indent=1))
  lines = ["# Dry-run layout study: the `paper` train step on fake CPU meshes", "",
           "`python -m benchmarks.dryrun_study` (each point: `python -m facetrack_jax.dryrun "
           "--config configs/paper.py --devices N --mesh M --step train --batch N "
           "--config.model.remat=R`). Per device; bytes in GiB; link = bytes one device sends "
           "per step in ring collectives; bound = max(model FLOPs ÷ peak, link ÷ ICI) on v5p. "
           "Fits: the peak estimate (arguments + outputs − aliased + temporaries) within the HBM "
           "of v5e (16 GiB), v5p (95 GiB), H100 (79.6 GiB).", "",
           "| devices | mesh | remat | params + opt | ÷ analytic | temporaries | peak | link | "
           "fits | v5p bound ms | compile s |",
           "|---:|---|---|---:|---:|---:|---:|---:|---|---:|---:|"]
  lines += [_row(r) for r in reports]
  lines += ["", "Caveats (printed by every dry run):", ""]
  lines += [f"- {c}" for c in dryrun.CAVEATS]
  out.with_suffix(".md").write_text("\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
