"""Serve the page with Streamlit in this process, in the foreground (Ctrl-C or SIGTERM stops it)."""

from __future__ import annotations

import socket
from pathlib import Path

from backbone.errors import ConfigError
from dashboard import page


def check_port(address: str, port: int) -> None:
    """ConfigError now, in one line, if the port cannot be listened on (Streamlit would log it
    and exit 1 after printing the URL)."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server itself binds
            probe.bind((address, port))
    except OSError as e:
        raise ConfigError(f"cannot serve on {address}:{port}: {e.strerror}; choose another --port or --address") from e


def serve(*, port: int, address: str, refresh: float) -> None:
    from streamlit import config
    from streamlit.web import bootstrap

    script = str(Path(page.__file__).resolve())
    options = {
        "server.port": port, "server.address": address, "server.headless": True,
        "server.fileWatcherType": "none", "server.runOnSave": False,
        "browser.gatherUsageStats": False, "client.toolbarMode": "viewer",
        "logger.hideWelcomeMessage": True, "theme.base": "light",
    }
    config._main_script_path = script  # where Streamlit looks for the script's own config files
    bootstrap.load_config_options(flag_options=options)
    bootstrap.run(script, False, ["--refresh", str(refresh)], options)
