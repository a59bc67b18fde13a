"""``python -m controller.cli``: the ``bumpline`` command line."""

import sys

from controller.cli import main

sys.exit(main())
