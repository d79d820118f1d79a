"""The audit archive's hash chain (pure): one link per archived record, per (topic, partition).

    hash(n) = SHA-256(link_bytes(hash(n-1), topic, partition, offset, timestamp, key, value))
    hash(-1) = GENESIS (32 zero bytes), for every (topic, partition)

`link_bytes` concatenates, in this order:

    previous hash   32 bytes
    topic           field(UTF-8 bytes)
    partition       4 bytes, signed big-endian
    offset          8 bytes, signed big-endian
    timestamp       8 bytes, signed big-endian: the Kafka timestamp in ms, as the record carries it
    key             field(bytes or null)
    value           field(bytes or null)

where field(null) = 0x00 and field(b) = 0x01, len(b) as 4 bytes unsigned big-endian, b. Every
part has a fixed width or says its own length, so no two different records give the same bytes
(‖ is unambiguous), and a null key or value differs from an empty one. The projection
(`projections.audit`) and `backbone audit verify` both call `link_hash`: one definition.
"""

from __future__ import annotations

import hashlib

GENESIS = bytes(32)
_NULL = b"\x00"
_PRESENT = b"\x01"


def _field(data: bytes | None) -> bytes:
    if data is None:
        return _NULL
    return _PRESENT + len(data).to_bytes(4, "big") + data


def link_bytes(previous: bytes, topic: str, partition: int, offset: int, timestamp_ms: int,
               key: bytes | None, value: bytes | None) -> bytes:
    """The bytes one link hashes (see the module docstring)."""
    if len(previous) != 32:
        raise ValueError(f"a previous hash is 32 bytes, not {len(previous)}")
    return b"".join((previous, _field(topic.encode("utf-8")), partition.to_bytes(4, "big", signed=True),
                     offset.to_bytes(8, "big", signed=True), timestamp_ms.to_bytes(8, "big", signed=True),
                     _field(key), _field(value)))


def link_hash(previous: bytes, topic: str, partition: int, offset: int, timestamp_ms: int,
              key: bytes | None, value: bytes | None) -> bytes:
    """The chain hash of one record, given the hash of the record archived before it."""
    return hashlib.sha256(link_bytes(previous, topic, partition, offset, timestamp_ms, key, value)).digest()
