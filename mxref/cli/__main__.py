"""``python -m mxref.cli``: the same as the ``mxref`` command."""

from mxref.cli import main

raise SystemExit(main())
