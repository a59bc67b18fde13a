"""The store facade's pass-through methods, made from the aggregates' functions.

Most of ``controller.store.Store``'s methods only hand their arguments on to one
function of an aggregate module (``controller.persistence.lots`` …) with the store's
``Database`` put first. Written out, each repeated that function's signature and
docstring, and every new parameter had to be added twice. ``bound(function)`` is the
method made from the function itself: the same parameters (mypy sees them, through
``Concatenate``), its docstring (or the one given, where the function has none).

The method is the function bound to the store's database (``types.MethodType``), kept
on the store at its first use: later calls cost no more than a plain method's, which
matters for the scheduler's hot-path writes.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MethodType
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, Self, TypeVar, overload

from controller.persistence.base import Database

P = ParamSpec("P")
R = TypeVar("R")


class HasDatabase(Protocol):
    _db: Database


class bound(Generic[P, R]):  # lower case: it reads as a verb where the methods are made
    """``name = bound(aggregate.function)`` in a class whose instances have ``_db``."""

    def __init__(self, function: Callable[Concatenate[Database, P], R], doc: str = "") -> None:
        self.function = function
        self.__doc__ = doc or function.__doc__
        self.name = function.__name__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, store: None, owner: type) -> Self: ...

    @overload
    def __get__(self, store: HasDatabase, owner: type) -> Callable[P, R]: ...

    def __get__(self, store: HasDatabase | None, owner: type) -> Any:
        if store is None:
            return self
        method = MethodType(self.function, store._db)
        store.__dict__[self.name] = method  # a non-data descriptor: found first from now on
        return method
