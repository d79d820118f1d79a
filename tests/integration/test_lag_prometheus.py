"""A real Prometheus server (Debian's `prometheus`) scrapes the lag monitor's /metrics, and its
query API returns the lag series under kafka-lag-exporter's names."""

from __future__ import annotations

import subprocess
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from lag_support import (
    MonitorProcess,
    SteadyMarks,
    active,
    commit_plain,
    debian_binary,
    free_port,
    get_json,
    wait_until,
)

from backbone.settings import Settings

pytestmark = pytest.mark.integration


def _query(base: str, expr: str) -> list[dict[str, Any]]:
    body = get_json(f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}")
    return list(body["data"]["result"]) if body and body.get("status") == "success" else []


def test_prometheus_scrapes_the_lag_series(created_topics: Settings, tmp_path: Path) -> None:
    server = debian_binary("prometheus", package="prometheus")
    settings = created_topics
    plain = "lag-prometheus-plain"
    metrics_port, prometheus_port = free_port(), free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: backbone-lag
    static_configs:
      - targets: ["127.0.0.1:{metrics_port}"]
""")
    monitor = prometheus = None
    try:
        with SteadyMarks(settings) as marks:
            wait_until("a few marks", lambda: marks.sent > 20)
            commit_plain(settings, plain, dict.fromkeys(range(settings.partitions), 0))
            monitor = MonitorProcess(settings, "--interval", "1", "--window", "3", "--metrics-port", str(metrics_port))
            monitor.wait_for("an evaluating pass", active, timeout=60)
            prometheus = subprocess.Popen(
                [server, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                 f"--web.listen-address=127.0.0.1:{prometheus_port}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            base = f"http://127.0.0.1:{prometheus_port}"
            lag = wait_until("the lag series in Prometheus", lambda: _query(
                base, f'kafka_consumergroup_group_lag{{group="{plain}",topic="{settings.topic_marketdata}"}}'),
                timeout=60)
        assert {r["metric"]["partition"] for r in lag} == {str(p) for p in range(settings.partitions)}
        assert all(r["metric"]["source"] == "kafka" for r in lag)
        assert sum(float(r["value"][1]) for r in lag) > 0
        for expr in (f'kafka_consumergroup_group_max_lag_seconds{{group="{plain}"}}',
                     f'backbone_lag_status{{group="{plain}",status="OK"}}',
                     f'kafka_partition_latest_offset{{topic="{settings.topic_marketdata}"}}',
                     "backbone_lag_evaluation_seconds_count"):
            assert _query(base, expr), expr
        assert monitor.stop() == ""
    finally:
        if prometheus is not None:
            prometheus.terminate()
            prometheus.communicate(timeout=30)
        if monitor is not None:
            monitor.kill()
