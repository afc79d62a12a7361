"""``python -m flarelet dev ...`` is the ``flarelet`` command."""

import sys

from .cli import main

sys.exit(main())
