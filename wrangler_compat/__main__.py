"""``python -m wrangler_compat dev ...`` is the ``flarelet`` command."""

import sys

from .cli import main

sys.exit(main())
