"""`python -m glue_lora <command> ...`: the same as the `glue-lora` command (glue_lora.commands)."""

import sys

from glue_lora.commands import main

if __name__ == "__main__":
    sys.exit(main())
