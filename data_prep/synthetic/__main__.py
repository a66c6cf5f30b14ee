"""CLI: python -m data_prep.synthetic --out DIR --num-clips N --seed S."""

import argparse
import json

from data_prep.synthetic import writer


def main(argv=None) -> dict:
  ap = argparse.ArgumentParser(prog="python -m data_prep.synthetic", description=__doc__)
  ap.add_argument("--out", required=True, help="output directory (the video root)")
  ap.add_argument("--num-clips", type=int, required=True)
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--frames", type=int, default=16, help="frames per clip (>= 8)")
  ap.add_argument("--width", type=int, default=320)
  ap.add_argument("--height", type=int, default=240)
  ap.add_argument("--fps", type=float, default=8.0)
  ap.add_argument("--takes", type=int, default=1,
                  help="consecutive clips sharing one cast (people and set)")
  ap.add_argument("--workers", type=int, default=1, help="processes (1 = in this process)")
  a = ap.parse_args(argv)
  summary = writer.generate(a.out, a.num_clips, a.seed, num_frames=a.frames, width=a.width,
                            height=a.height, fps=a.fps, workers=a.workers,
                            takes=a.takes)
  print(json.dumps(summary, indent=1))
  return summary


if __name__ == "__main__":
  main()
