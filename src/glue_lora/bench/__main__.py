"""`python -m glue_lora.bench`: the benchmark's command line (see glue_lora.bench.command)."""

import sys

from glue_lora.bench.command import main

if __name__ == "__main__":
    sys.exit(main())
