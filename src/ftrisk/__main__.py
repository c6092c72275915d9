"""``python -m ftrisk`` (as accelerate launch ... -m ftrisk): the command line."""

import sys

from ftrisk.cli import main

sys.exit(main())
