"""Where a reader's next offset lies against a partition's log bounds, and what that means (pure).

A projection reads a partition from the offset after the last one it applied. Kafka deletes
records from the front of the log (retention, `delete_records`) and a recreated topic starts
again at 0, so that offset may no longer be in the log. Kafka's own answer, `auto.offset.reset`,
is to jump silently to one end: records vanish from the projected state and nobody is told.
Every reader here asks `classify` instead, at assignment and whenever the broker says "offset out
of range" mid-run, and refuses or counts according to the topic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Verdict = Literal["within", "expired", "deleted", "beyond_end"]


@dataclass(frozen=True, slots=True)
class Bounds:
    """One partition's next offset to read and its log's [low, high) watermarks."""

    topic: str
    partition: int
    next_offset: int
    low: int
    high: int

    @property
    def missing(self) -> int:
        """Records between the next offset and the log start (deleted before they were read)."""
        return max(self.low - self.next_offset, 0)


def classify(bounds: Bounds, *, expiring: bool) -> Verdict:
    """within: readable from next_offset; expired: records below the log start are gone and the
    topic's records may expire (latest-value data: go on from the log start, count them);
    deleted: gone, and the state cannot be exact without them; beyond_end: the log ends before
    next_offset (topic recreated or truncated): new records would be taken for applied ones."""
    if bounds.next_offset > bounds.high:
        return "beyond_end"
    if bounds.next_offset >= bounds.low:
        return "within"
    return "expired" if expiring else "deleted"


def refusal(bounds: Bounds, verdict: Verdict, remedy: str) -> str:
    """The error message for a refused verdict (`deleted` or `beyond_end`); `remedy` says what to do."""
    where = f"{bounds.topic}[{bounds.partition}]"
    if verdict == "beyond_end":
        return (f"{where}: the next offset to project is {bounds.next_offset} but the log ends at {bounds.high}: "
                f"the topic was recreated or truncated since this projection read it; {remedy}")
    if verdict == "deleted":
        return (f"{where}: the next offset to project is {bounds.next_offset} but the log starts at {bounds.low}: "
                f"records {bounds.next_offset}..{bounds.low - 1} were deleted before this projection read them, "
                f"and its state cannot be exact without them: {remedy}")
    raise ValueError(f"{verdict} is not a refusal")
