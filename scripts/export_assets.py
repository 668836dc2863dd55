"""Copy a trained world model (a runs/<name>/ folder with vision and, if present, memory and controller) into assets/.

usage: python scripts/export_assets.py RUN_DIR VISION_KIND   (VISION_KIND: conv_vae | dds_vae)
"""

import sys
from pathlib import Path

from core.assets import export_assets

if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    run = Path(sys.argv[1])
    memory, controller = run / "memory.safetensors", run / "controller.safetensors"
    for path in export_assets(
        run / "vision.safetensors",
        memory if memory.is_file() else None,
        controller if controller.is_file() else None,
        sys.argv[2],
    ):
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
