"""`python -m callfs_cli` runs the `callfs` command."""

import sys

from callfs_cli.main import main

if __name__ == "__main__":
    sys.exit(main())
