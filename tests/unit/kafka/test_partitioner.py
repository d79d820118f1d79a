from __future__ import annotations

import pytest

from backbone.kafka.partitioner import murmur2, partition_for

# Kafka's own vectors (clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java).
JAVA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize("key,expected", JAVA_VECTORS.items(), ids=[k.decode() for k in JAVA_VECTORS])
def test_murmur2_matches_java_vectors(key: bytes, expected: int) -> None:
    assert murmur2(key) == expected


def test_partition_is_in_range_and_stable() -> None:
    for n in (1, 3, 12, 50):
        for i in range(200):
            key = f"SYM{i}".encode()
            p = partition_for(key, n)
            assert 0 <= p < n and p == partition_for(key, n)
