"""The English text the embedded demo model is trained and evaluated on.

Every machine with Python has it offline: the topic pages of the Python
documentation (``pydoc_data.topics``) and the docstrings of the standard
library.  :func:`build_corpus` splits them into documents, deterministically,
and assigns every fifth pydoc topic (in sorted order) to the held-out split,
so that the perplexity text was never seen in training.  The held-out and
calibration texts of the shipped model are committed next to it
(``batquant/demo/tiny_qwen3/``), because another Python version ships other
documentation.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import warnings
from dataclasses import dataclass

#: Standard-library modules whose import has side effects (a browser, a
#: printed poem, a GUI) or that hold test data rather than documentation.
SKIPPED_MODULES = frozenset({
    "antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "test",
    "lib2to3", "ensurepip", "venv", "pydoc_data", "__main__", "__phello__",
})  # fmt: skip
#: Every HELDOUT_EVERY-th pydoc topic goes to the held-out split.
HELDOUT_EVERY = 5
#: Separates documents in the joined texts.
SEPARATOR = "\n\n"


@dataclass(frozen=True)
class Corpus:
    """The demo corpus as lists of documents.

    Attributes
    ----------
    train : list of str
        Standard-library docstrings and four of every five pydoc topics.
    heldout : list of str
        The remaining pydoc topics: the perplexity text.
    """

    train: list[str]
    heldout: list[str]


def _docstrings() -> list[str]:
    """Unique docstrings of the standard library's modules, classes and functions, in order."""
    seen: set[str] = set()
    out: list[str] = []
    for name in sorted(sys.stdlib_module_names):
        if name.startswith("_") or name in SKIPPED_MODULES:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                module = importlib.import_module(name)
        except Exception:  # noqa: BLE001 - platform modules that do not import here
            continue
        objects = [module] + [
            obj for _, obj in sorted(vars(module).items())
            if inspect.isclass(obj) or inspect.isfunction(obj)
        ]  # fmt: skip
        for obj in objects:
            doc = inspect.getdoc(obj)
            if doc and len(doc) > 80 and doc not in seen:
                seen.add(doc)
                out.append(doc)
    return out


def build_corpus() -> Corpus:
    """Return the train and held-out documents (deterministic for one Python version).

    Returns
    -------
    Corpus
    """
    topics = importlib.import_module("pydoc_data.topics").topics
    names = sorted(topics)
    heldout = [topics[n].strip() for i, n in enumerate(names) if i % HELDOUT_EVERY == 0]
    train_topics = [topics[n].strip() for i, n in enumerate(names) if i % HELDOUT_EVERY != 0]
    return Corpus(train=train_topics + _docstrings(), heldout=heldout)
