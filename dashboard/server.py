"""Serve the page with Streamlit in this process, in the foreground (Ctrl-C or SIGTERM stops it)."""

from __future__ import annotations

from pathlib import Path

from dashboard import page


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
