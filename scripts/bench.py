"""Print the pipeline's throughput figures: the same as `dream-explorer bench` (takes its options)."""

import sys

from explorer.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
