"""``python -m mxref``: the same command line as ``mxref``."""

import sys

from mxref.cli import main

sys.exit(main())
