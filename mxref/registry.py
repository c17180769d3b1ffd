"""One small name-to-object registry for formats, presets, profiles, configs and methods.

A :class:`Registry` is a read-only mapping from canonical names to frozen
objects, with case-insensitive look-up, aliases (other libraries' names for
the same thing) and one error message per registry that names the bad value
and lists the known names.  Every look-up-by-name in mxref and batquant goes
through one, so "which names exist" and "what an unknown name says" are
answered in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Generic, TypeVar

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """Canonical name -> object, case-insensitive, with aliases.

    Parameters
    ----------
    kind : str
        What the objects are, for messages (``"format"``, ``"method"``).
    item_type : type
        :meth:`get` returns an instance of it unchanged.
    items : iterable, optional
        Registered in order under ``name_of(item)``.
    name_of : callable
        The canonical name of an item; ``item.name`` by default.
    unknown : str
        The message for an unknown name, formatted with ``kind``, ``name``
        (the ``repr`` of the value given) and ``known`` (the canonical names,
        quoted and comma-separated).

    Notes
    -----
    Iteration and ``len`` see canonical names only, in registration order;
    ``[]``, ``in`` and ``.get`` also accept any case and the aliases, and
    behave as a dict's (``KeyError``, ``None``).  :meth:`resolve` is the
    look-up the libraries use: it passes an item through and turns an unknown
    name into the registry's ``ValueError``.
    """

    def __init__(
        self,
        kind: str,
        item_type: type[T],
        items: Iterable[T] = (),
        *,
        name_of: Callable[[T], str] | None = None,
        unknown: str = "{kind} must be one of {known}; got {name}",
    ) -> None:
        self.kind = kind
        self.item_type = item_type
        self._name_of = name_of if name_of is not None else _name_attribute
        self._unknown = unknown
        self._items: dict[str, T] = {}
        self._keys: dict[str, str] = {}  # lower-cased name or alias -> canonical name
        for item in items:
            self.register(item)

    def register(self, item: T, *, aliases: Iterable[str] = (), replace: bool = False) -> T:
        """Add ``item`` under its name and ``aliases``; return ``item``.

        Raises
        ------
        TypeError
            ``item`` is not an ``item_type``.
        ValueError
            The name or an alias is taken and ``replace`` is False.
        """
        if not isinstance(item, self.item_type):
            raise TypeError(f"{self.kind} must be a {self.item_type.__name__}; "
                            f"got {type(item).__name__}")  # fmt: skip
        name = self._name_of(item)
        keys = [name.lower(), *(a.strip().lower() for a in aliases)]
        if not replace:
            owner = self._keys.get(keys[0])
            if owner is not None:
                known_as = "" if owner == name else f" as {owner!r}"
                raise ValueError(f"{self.kind} {name!r} is already registered{known_as}; "
                                 "pass replace=True")  # fmt: skip
            for key in keys[1:]:
                if key in self._keys:
                    raise ValueError(f"{self.kind} name {key!r} is already taken by "
                                     f"{self._keys[key]!r}")  # fmt: skip
        for key in keys:  # replacing: another item holding one of these names goes
            if self._keys.get(key, name) != name:
                self._forget(self._keys[key])
        self._items[name] = item
        for key in keys:
            self._keys[key] = name
        return item

    def unregister(self, name: str) -> T:
        """Remove the item called ``name`` (any case, or an alias) and its aliases; return it.

        Raises
        ------
        ValueError
            Unknown name, as :meth:`resolve` says it.
        """
        item = self.resolve(name)
        self._forget(self._name_of(item))
        return item

    def _forget(self, name: str) -> None:
        del self._items[name]
        self._keys = {k: v for k, v in self._keys.items() if v != name}

    def resolve(self, name: str | T) -> T:
        """The item called ``name`` (any case, or an alias), or ``name`` itself if an item.

        Raises
        ------
        ValueError
            Unknown name: the registry's message, listing the known names.
        TypeError
            Neither a string nor an item.
        """
        if isinstance(name, self.item_type):
            return name
        if not isinstance(name, str):
            raise TypeError(f"{self.kind} must be a name or a {self.item_type.__name__}; "
                            f"got {type(name).__name__}")  # fmt: skip
        canonical = self._keys.get(name.strip().lower())
        if canonical is None:
            known = ", ".join(map(repr, self._items))
            raise ValueError(self._unknown.format(kind=self.kind, name=repr(name), known=known))
        return self._items[canonical]

    def aliases(self, name: str) -> tuple[str, ...]:
        """The other names :meth:`get` accepts for the item called ``name``."""
        own = self._name_of(self.resolve(name))
        return tuple(k for k, v in self._keys.items() if v == own and k != own.lower())

    def __getitem__(self, name: str) -> T:
        canonical = self._keys.get(name.strip().lower()) if isinstance(name, str) else None
        if canonical is None:
            raise KeyError(name)
        return self._items[canonical]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.strip().lower() in self._keys

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self._items)})"


def _name_attribute(item: object) -> str:
    name = getattr(item, "name", None)
    if not isinstance(name, str):
        raise TypeError(f"{type(item).__name__} has no str name; pass name_of")
    return name
