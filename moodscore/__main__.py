"""``python -m moodscore ARGS`` runs ``moodscore ARGS``."""

import sys

from daemon.cli import main

if __name__ == "__main__":
    sys.exit(main())
