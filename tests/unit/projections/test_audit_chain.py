"""The audit chain's link encoding (projections.audit_chain): unambiguous at every field
boundary, a null key or value distinct from an empty one, and pinned by a known vector."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from projections.audit_chain import GENESIS, link_bytes, link_hash

hashes = st.binary(min_size=32, max_size=32)
topics = st.text(alphabet="abcdefghijklmnopqrstuvwxyz._-0123456789", min_size=1, max_size=30)
partitions = st.integers(min_value=0, max_value=2**31 - 1)
offsets = st.integers(min_value=0, max_value=2**63 - 1)
timestamps = st.integers(min_value=-1, max_value=2**63 - 1)
blobs = st.one_of(st.none(), st.binary(max_size=40))
links = st.tuples(hashes, topics, partitions, offsets, timestamps, blobs, blobs)


def _parse(data: bytes) -> tuple[bytes, str, int, int, int, bytes | None, bytes | None]:
    """The inverse of link_bytes: if it exists, two different links never give the same bytes."""
    at = 32

    def field() -> bytes | None:
        nonlocal at
        flag = data[at]
        at += 1
        if flag == 0:
            return None
        assert flag == 1
        size = int.from_bytes(data[at:at + 4], "big")
        at += 4
        out = data[at:at + size]
        assert len(out) == size
        at += size
        return out

    def number(width: int) -> int:
        nonlocal at
        value = int.from_bytes(data[at:at + width], "big", signed=True)
        at += width
        return value

    previous = data[:32]
    topic = field()
    assert topic is not None
    partition, offset, timestamp = number(4), number(8), number(8)
    key, value = field(), field()
    assert at == len(data)
    return previous, topic.decode(), partition, offset, timestamp, key, value


@given(links)
def test_link_bytes_can_be_read_back(link: tuple) -> None:
    assert _parse(link_bytes(*link)) == link


@given(links, links)
def test_different_links_never_share_bytes(a: tuple, b: tuple) -> None:
    assert (link_bytes(*a) == link_bytes(*b)) == (a == b)


@pytest.mark.parametrize(("a", "b"), [
    ((None, b""), (b"", None)),  # null key vs empty key
    ((b"ab", b"c"), (b"a", b"bc")),  # a byte moved across the key/value boundary
    ((b"", b"x"), (None, b"x")),
])
def test_key_value_boundaries_do_not_collide(a: tuple, b: tuple) -> None:
    assert link_hash(GENESIS, "t", 0, 1, 2, *a) != link_hash(GENESIS, "t", 0, 1, 2, *b)


def test_known_vector() -> None:
    """The format is part of the archive: changing it breaks every stored chain."""
    expected = hashlib.sha256(bytes(32) + b"\x01\x00\x00\x00\x01t" + (3).to_bytes(4, "big") + (7).to_bytes(8, "big")
                              + (1_700_000_000_000).to_bytes(8, "big") + b"\x00" + b"\x01\x00\x00\x00\x02hi").digest()
    assert link_hash(GENESIS, "t", 3, 7, 1_700_000_000_000, None, b"hi") == expected


def test_previous_hash_must_be_32_bytes() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        link_bytes(b"short", "t", 0, 0, 0, None, None)
