"""``python -m monitoring <command> ...`` -- see :mod:`monitoring.cli`."""

import sys

from monitoring.cli import main

if __name__ == "__main__":
    sys.exit(main())
