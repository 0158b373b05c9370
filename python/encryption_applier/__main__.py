"""``python -m encryption_applier``: the same command line as ``encryption-applier``."""

import sys

from .cli import main

sys.exit(main())
