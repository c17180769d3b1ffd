"""``python -m batquant``: the same command line as ``batquant``."""

import sys

from batquant.cli import main

sys.exit(main())
