"""Normalize stage: the two lookup structures behind Warninglists.match that a dict cannot be, built once when
the lists are indexed: listed networks found by bisect, and substring entries found by q-grams.

They hold no MISP semantics (which list applies to which kind of value, and how): that is warninglists.py.
"""

import socket
from bisect import bisect_right
from collections import Counter

_GRAM = 4  # substring index key length; a kind with shorter entries uses their length
_PROBE_COST = 3  # a q-gram probe costs about three `str in str` tests (measured on 60-character URLs)


class RangeIndex:
    """Listed networks flattened into sorted, non-overlapping segments, each with the lists covering it, found by
    bisect. Per-prefix-length hash sets (MISP's way) cost a probe per length present, 26 for IPv4 and 51 for IPv6
    in the bundled lists (3.3 us per IPv6 miss). A table by the top 16 bits narrows each bisect to a few segments:
    over the 180,000 IPv4 segments a plain bisect chases pointers to scattered ints (1 us)."""

    __slots__ = ("_family", "_ids", "_shift", "_starts", "_table", "_width")

    def __init__(self, version: int, ranges: list[tuple[int, int, int]],
                 interned: dict[tuple[int, ...], tuple[int, ...]]) -> None:
        self._family, self._width = (socket.AF_INET, 32) if version == 4 else (socket.AF_INET6, 128)
        events = sorted([(first, list_id, 1) for first, _, list_id in ranges]
                        + [(last + 1, list_id, -1) for _, last, list_id in ranges])
        active: dict[int, int] = {}  # list id -> how many of its networks cover the current point
        starts: list[int] = [0]  # segment 0 starts at address 0, so every lookup lands in a segment
        ids: list[tuple[int, ...]] = [()]
        for position, (point, list_id, delta) in enumerate(events):
            count = active.get(list_id, 0) + delta
            if count:
                active[list_id] = count
            else:
                del active[list_id]
            if position + 1 < len(events) and events[position + 1][0] == point:
                continue  # apply every event at this point before recording the segment
            covering = tuple(sorted(active))
            covering = interned.setdefault(covering, covering)
            if covering == ids[-1]:
                continue
            if starts[-1] == point:
                ids[-1] = covering
            else:
                starts.append(point)
                ids.append(covering)
        self._starts, self._ids = starts, ids
        # _table[b] is the first segment starting in top-16-bit bucket b: the segments that can hold an address of
        # bucket b are _table[b] - 1 .. _table[b + 1] - 1.
        self._shift = self._width - 16
        self._table = [bisect_right(starts, (bucket << self._shift) - 1) for bucket in range((1 << 16) + 1)]

    def find_text(self, value: str) -> tuple[int, ...]:
        """Lists with a network holding all of a canonical address or CIDR."""
        address, _, prefix = value.partition("/")
        try:
            first = int.from_bytes(socket.inet_pton(self._family, address), "big")
            length = int(prefix) if prefix else self._width
        except (OSError, ValueError):
            return ()
        if not 0 <= length <= self._width:
            return ()
        last = first | ((1 << (self._width - length)) - 1)
        at_first = self._covering(first)
        if first == last or not at_first:
            return at_first
        # Two CIDR blocks are nested or disjoint, so a listed block holding both ends holds the whole value.
        at_last = self._covering(last)
        return tuple(list_id for list_id in at_first if list_id in at_last)

    def _covering(self, address: int) -> tuple[int, ...]:
        bucket = address >> self._shift
        return self._ids[bisect_right(self._starts, address, self._table[bucket], self._table[bucket + 1]) - 1]


class SubstringIndex:
    """Substring entries found without trying each one (trying all 4,941 disposable e-mail domains with `in` costs
    ~200 us a value). A value probes its q-grams at every `stride`-th position; an entry at least q + stride - 1
    long then has a probed q-gram inside it wherever it sits, at an offset whose residue mod stride depends on where,
    so each entry is filed under its rarest q-gram of every residue (rare grams: small buckets to check)."""

    __slots__ = ("_entries", "_fold_case", "_gram_set", "_grams", "_q", "_stride")

    def __init__(self, entries: list[tuple[str, int]], *, fold_case: bool) -> None:
        self._fold_case = fold_case  # entries are lower-cased; canonical values of most kinds already are
        self._entries = tuple(dict.fromkeys(entries))
        shortest = min(len(entry) for entry, _ in self._entries)
        q = self._q = min(_GRAM, shortest)
        stride = self._stride = shortest - q + 1
        counts = Counter(entry[i:i + q] for entry, _ in self._entries for i in range(len(entry) - q + 1))
        grams: dict[str, list[tuple[str, int, int]]] = {}
        for entry, list_id in self._entries:
            for residue in range(stride):
                offset = min(range(residue, len(entry) - q + 1, stride), key=lambda i: counts[entry[i:i + q]])
                grams.setdefault(entry[offset:offset + q], []).append((entry, offset, list_id))
        self._grams = {gram: tuple(found) for gram, found in grams.items()}
        self._gram_set = frozenset(grams)  # frozenset.isdisjoint is faster than the dict's keys view

    def find(self, value: str) -> tuple[int, ...]:
        if self._fold_case:
            value = value.lower()
        q, stride = self._q, self._stride
        probes = range(0, len(value) - q + 1, stride)
        if len(self._entries) <= _PROBE_COST * len(probes):
            # A long URL against a short list: C-speed `in` per entry is cheaper than slicing every probe.
            return tuple([list_id for entry, list_id in self._entries if entry in value])
        probed = [value[i:i + q] for i in probes]
        if self._gram_set.isdisjoint(probed):  # the usual case, decided in C: no entry can be in the value
            return ()
        found: tuple[int, ...] = ()
        for i, gram in zip(probes, probed, strict=True):
            for entry, offset, list_id in self._grams.get(gram, ()):
                if i >= offset and value.startswith(entry, i - offset):
                    found += (list_id,)
        return found
