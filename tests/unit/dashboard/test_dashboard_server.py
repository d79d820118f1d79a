"""`backbone dashboard` says in one line that its port is taken, before Streamlit starts."""

from __future__ import annotations

import socket

import pytest

from backbone.errors import ConfigError
from dashboard import server


def test_a_port_in_use_is_refused_with_the_next_step() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot serve on 127.0.0.1:{port}: .*choose another --port"):
            server.check_port("127.0.0.1", port)
    server.check_port("127.0.0.1", port)  # free again
