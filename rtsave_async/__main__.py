"""``python -m rtsave_async train|test ...``."""

import sys

from rtsave_async.cli import main

sys.exit(main())
