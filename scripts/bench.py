"""Print the pipeline's throughput figures (same as `dream-explorer bench`)."""

import sys

from core.bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
