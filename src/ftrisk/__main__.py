"""``python -m ftrisk`` (as accelerate launch ... -m ftrisk): the command line."""

import sys

from .cli import main

sys.exit(main())
