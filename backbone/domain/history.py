"""The fill history a position keeps: an append-only sequence that successive versions of a
position share (`History`), and one still in a snapshot, loaded on first read (`Deferred`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from itertools import islice
from typing import TypeVar, overload

from backbone.domain.plain import slots_builder
from backbone.errors import InvariantViolation

T = TypeVar("T")


class History(Sequence[T]):
    """An immutable sequence: the first `n` items of an append-only list that successive
    versions of a position share, so appending a fill costs O(1) instead of copying every
    live fill into a new tuple (quadratic for a busy account and symbol).

    The shared list is only ever appended to, never changed in place: a version sees exactly
    its first n items whatever later versions appended. Appending to a version that is not the
    newest (a restatement restarting from an earlier state) copies its n items first. Equal to
    any sequence of the same items, tuples included; slices from the start are views.
    """

    __slots__ = ("_items", "_n")

    def __init__(self, items: list[T], n: int) -> None:
        self._items = items
        self._n = n

    def appended(self, item: T) -> History[T]:
        return appended(self, item)  # type: ignore[return-value]

    def prefix(self, n: int) -> History[T]:
        """The first n (<= len) items, a view."""
        return History(self._items, n)

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, index: int) -> T: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[T]: ...

    def __getitem__(self, index: int | slice) -> T | Sequence[T]:
        if isinstance(index, slice):
            start, stop, step = index.indices(self._n)
            if start == 0 and step == 1:
                return self.prefix(stop)
            return tuple(self._items[: self._n][index])
        if not -self._n <= index < self._n:
            raise IndexError("history index out of range")
        return self._items[index % self._n]

    def __iter__(self) -> Iterator[T]:
        return islice(self._items, self._n)

    def __reversed__(self) -> Iterator[T]:
        items = self._items
        return (items[i] for i in range(self._n - 1, -1, -1))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (History, tuple)):
            return len(other) == self._n and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return repr(tuple(self))


# History(items, n) without the __init__ call, and `_appended` inline: a fill appends twice
# (fills, prior_states). callgrind, 20,000 fills of a simulated session: 29,689 instructions a
# fill in `apply_fill` instead of 32,166.
_new_history = slots_builder(History, ("_items", "_n"))


class Deferred(Sequence[T]):
    """A history still in a snapshot: its length is known, its items are loaded on the first
    read. Appending keeps it deferred, so a position restored lazily takes new fills without
    loading its old ones; a restatement, a duplicate scan or a comparison loads them.

    `load()` gives the first `base` items (the snapshot's); `hot` holds those appended since.
    """

    __slots__ = ("_load", "_base", "_hot", "_items")

    def __init__(self, load: Callable[[], Sequence[T]], base: int, hot: History[T] | None = None) -> None:
        self._load = load
        self._base = base
        self._hot: History[T] = History([], 0) if hot is None else hot
        self._items: History[T] | None = None

    @property
    def is_loaded(self) -> bool:
        return self._items is not None

    def appended(self, item: T) -> Sequence[T]:
        if self._items is not None:
            return self._items.appended(item)
        return Deferred(self._load, self._base, self._hot.appended(item))

    def loaded(self) -> History[T]:
        """The whole history (loaded once; a load of the wrong length is refused)."""
        if self._items is None:
            items = list(self._load())
            if len(items) != self._base:
                raise InvariantViolation(f"a deferred history loaded {len(items)} items, expected {self._base}")
            items.extend(self._hot)
            self._items = History(items, len(items))
        return self._items

    def __len__(self) -> int:
        return self._base + len(self._hot)

    @overload
    def __getitem__(self, index: int) -> T: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[T]: ...

    def __getitem__(self, index: int | slice) -> T | Sequence[T]:
        # What a restatement of a fill applied since the restore reads (the fills after it, the
        # prefix before it, the state before it) lies in `hot`: answered without loading.
        base = self._base
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if self._items is None and step == 1:
                if start >= base:
                    return self._hot[start - base : max(stop, start) - base]
                if start == 0 and stop >= base:
                    return Deferred(self._load, base, self._hot.prefix(stop - base))
            return self.loaded()[index]
        n = len(self)
        if not -n <= index < n:
            raise IndexError("history index out of range")
        index %= n
        if self._items is None and index >= base:
            return self._hot[index - base]
        return self.loaded()[index]

    def __iter__(self) -> Iterator[T]:
        return iter(self.loaded())

    def __reversed__(self) -> Iterator[T]:
        return reversed(self.loaded())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Deferred):
            return self.loaded() == other.loaded()
        if isinstance(other, (History, tuple)):
            return self.loaded() == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.loaded())

    def __repr__(self) -> str:
        return repr(self.loaded()) if self._items is not None else f"<deferred history of {len(self)}>"


def appended(sequence: Sequence[T], item: T) -> Sequence[T]:
    """`sequence` + (item,) as a History, or still a Deferred one (a hand-built position may
    hold a plain tuple)."""
    if type(sequence) is History:  # inline: the hot path of every fill, twice
        items, n = sequence._items, sequence._n  # noqa: SLF001
        if len(items) != n:  # another version appended already: fork from our prefix
            items = items[:n]
        items.append(item)
        return _new_history(items, n + 1)
    if type(sequence) is Deferred:
        return sequence.appended(item)
    return History([*sequence, item], len(sequence) + 1)
