"""Copy a trained world model (a runs/<name>/ folder with vision and, if present, memory and controller) into assets/.

usage: python scripts/export_assets.py RUN_DIR VISION_KIND [--fp32]   (VISION_KIND: conv_vae | dds_vae)

V and M are stored as float16 unless --fp32 (the ConvVAE's were measured equal on 20 held-out tracks; the
DDS+VAE ships as float32, not measured in float16).
"""

import sys
from pathlib import Path

from core.assets import export_assets

if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--fp32"]
    if len(args) != 2:
        sys.exit(__doc__)
    run = Path(args[0])
    memory, controller = run / "memory.safetensors", run / "controller.safetensors"
    for path in export_assets(
        run / "vision.safetensors",
        memory if memory.is_file() else None,
        controller if controller.is_file() else None,
        args[1],
        half="--fp32" not in sys.argv[1:],
    ):
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
