"""A real Alertmanager (Debian's `prometheus-alertmanager`) receives the monitor's alerts through
its v2 API: active while the alert fires, gone once it resolves."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from lag_support import (
    STALLED_RULE,
    MonitorProcess,
    SteadyMarks,
    commit_plain,
    debian_binary,
    free_port,
    get_json,
    log_ends,
    rules_file,
    wait_until,
)

from backbone.settings import Settings

pytestmark = pytest.mark.integration



def test_alertmanager_gets_the_firing_alert_and_its_resolution(created_topics: Settings, tmp_path: Path) -> None:
    server = debian_binary("prometheus-alertmanager", "alertmanager", package="prometheus-alertmanager")
    settings = created_topics
    plain = "lag-alertmanager-plain"
    port = free_port()
    config = tmp_path / "alertmanager.yml"
    config.write_text('route:\n  receiver: "null"\nreceivers:\n  - name: "null"\n')
    manager = subprocess.Popen([server, f"--config.file={config}", f"--storage.path={tmp_path / 'data'}",
                                f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    monitor = None
    try:
        wait_until("Alertmanager up", lambda: get_json(f"{base}/api/v2/status") is not None)
        with SteadyMarks(settings) as marks:
            wait_until("a few marks", lambda: marks.sent > 20)
            commit_plain(settings, plain, dict.fromkeys(range(settings.partitions), 0))
            monitor = MonitorProcess(settings, "--rules", rules_file(tmp_path, STALLED_RULE), "--interval", "1",
                                     "--window", "4", "--alertmanager", base)

            def ours() -> list[dict]:
                return [a for a in get_json(f"{base}/api/v2/alerts") or []
                        if a["labels"].get("group") == plain and a["labels"].get("alertname") == "Stalled"]

            (alert,) = wait_until("the alert active in Alertmanager", ours, timeout=60)
            assert alert["status"]["state"] == "active"
            assert alert["labels"]["severity"] == "critical" and alert["labels"]["topic"] == settings.topic_marketdata
        since = monitor.mark()
        commit_plain(settings, plain, log_ends(settings))  # caught up, and no more marks come
        monitor.wait_for("the resolution", lambda e: e["event"] == "alert" and e["state"] == "resolved"
                         and e["group"] == plain, timeout=30, since=since)
        wait_until("the alert gone from Alertmanager", lambda: not ours(), timeout=30)
        assert monitor.stop() == ""
    finally:
        manager.terminate()
        manager.communicate(timeout=30)
        if monitor is not None:
            monitor.kill()
