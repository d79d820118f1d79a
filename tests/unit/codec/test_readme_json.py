"""The canonical JSON examples of docs/events.md are valid input for `backbone publish` and are
exactly what the encoder writes back."""

from __future__ import annotations

import re
from pathlib import Path

from backbone.codec import json_form

EVENTS_DOC = Path(__file__).resolve().parents[3] / "docs" / "events.md"


def test_readme_json_examples_round_trip() -> None:
    blocks = re.findall(r"```json\n(.*?)```", EVENTS_DOC.read_text(), flags=re.S)
    lines = [line for block in blocks for line in block.splitlines() if line.strip()]
    assert len(lines) >= 2
    for line in lines:
        record = json_form.loads(line)
        assert json_form.dumps(record) == line
