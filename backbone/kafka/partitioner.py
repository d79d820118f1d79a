"""Java Kafka's default partitioner for keyed records, in Python: murmur2(key) & 0x7fffffff % n.

librdkafka's `murmur2_random` partitioner is the same function, so Python and Java producers
place a symbol on the same partition. The projection uses it to know where a symbol lives.
"""

from __future__ import annotations


def murmur2(data: bytes) -> int:
    """Kafka's `Utils.murmur2` (seed 0x9747b28c), as a signed 32-bit int like Java's."""
    length = len(data)
    m, r = 0x5BD1E995, 24
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    rest = length % 4
    tail = length - rest
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Java's DefaultPartitioner / BuiltInPartitioner picks for a keyed record."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def symbol_partition(symbol: str, partitions: int) -> int:
    return partition_for(symbol.encode("utf-8"), partitions)
