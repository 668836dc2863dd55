"""A controller of zeros (steer 0, gas 0.5, brake 0 whatever it sees): where CMA-ES starts from, as a baseline.

    .venv/bin/python scripts/zero_controller.py --like runs/s29/c_dream_yaw_pen_c1.safetensors \\
        --out runs/s30/c_zero.safetensors
"""

from __future__ import annotations

import argparse
import sys

import torch

from core.checkpoint import load_model, save_checkpoint, saved_metadata
from core.errors import DreamExplorerError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--like", required=True, help="controller whose sizes, V and M the zero one takes")
    parser.add_argument("--out", required=True, help="controller checkpoint to write")
    args = parser.parse_args(argv)
    try:
        controller = load_model(args.like, "controller")
    except DreamExplorerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    _, extra = saved_metadata(controller)
    with torch.no_grad():
        for p in controller.parameters():
            p.zero_()
    save_checkpoint(args.out, controller, kind="controller", config=controller.config, extra=extra)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
