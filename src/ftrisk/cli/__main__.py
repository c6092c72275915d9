"""``python -m ftrisk.cli``: the same as the ``ftrisk`` command (accelerate launch uses it)."""

import sys

from ftrisk.cli import main

sys.exit(main())
