"""next_batch: block for the first record only, then drain what is fetched (no I/O)."""

from __future__ import annotations

from backbone.kafka.batches import next_batch


class Recorder:
    """Stands in for confluent_kafka.Consumer: records the calls, returns queued answers."""

    def __init__(self, first: object, rest: list[object]) -> None:
        self.first, self.rest, self.calls = first, rest, []

    def poll(self, timeout: float) -> object:
        self.calls.append(("poll", timeout))
        return self.first

    def consume(self, num_messages: int, timeout: float) -> list[object]:
        self.calls.append(("consume", num_messages, timeout))
        return self.rest[:num_messages]


def test_waits_only_for_the_first_record_then_takes_what_is_fetched_without_waiting() -> None:
    consumer = Recorder("m1", ["m2", "m3"])
    assert next_batch(consumer, 100, 0.5) == ["m1", "m2", "m3"]
    assert consumer.calls == [("poll", 0.5), ("consume", 99, 0)]


def test_nothing_within_the_timeout_is_an_empty_batch() -> None:
    consumer = Recorder(None, ["never asked for"])
    assert next_batch(consumer, 100, 0.5) == []
    assert consumer.calls == [("poll", 0.5)]


def test_a_batch_of_one_is_the_first_record() -> None:
    consumer = Recorder("m1", ["m2"])
    assert next_batch(consumer, 1, 0.5) == ["m1"]
    assert consumer.calls == [("poll", 0.5)]
