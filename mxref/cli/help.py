"""What every ``mxref`` subcommand's ``--help`` shares: the examples epilog."""

from __future__ import annotations

import argparse

__all__ = ["ExamplesFormatter", "examples"]

_MARK = "examples:\n"


class ExamplesFormatter(argparse.HelpFormatter):
    """argparse's formatter, except that an :func:`examples` epilog keeps its lines.

    Descriptions still wrap to the terminal; command lines must not.
    """

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith(_MARK):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def examples(*commands: str) -> str:
    """An epilog listing ``commands``, one per line, for :class:`ExamplesFormatter`."""
    return _MARK + "\n".join(f"  {c}" for c in commands)
