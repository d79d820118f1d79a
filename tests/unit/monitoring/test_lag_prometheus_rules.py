"""The shipped Prometheus alert rules: they mirror the monitor's default rules, and promtool's
unit tests pass on them and fail on a broken copy."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest

from monitoring.model import Status
from monitoring.rules import duration_text, load_rules

RULES = Path(__file__).resolve().parents[3] / "monitoring" / "prometheus"


def _promtool() -> str:
    """promtool; a hard requirement where `make deps` can install it (CI, root with apt-get)."""
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI") == "true" or (os.geteuid() == 0 and shutil.which("apt-get")):
            pytest.fail("promtool is missing: `make deps` installs it (Debian's prometheus)")
        pytest.skip("promtool is not installed and this user cannot install packages (apt-get install prometheus)")
    return found


def _promtool_run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_promtool_checks_and_tests_the_rules() -> None:
    checked = _promtool_run("check", "rules", "lag-alerts.yml", cwd=RULES)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _promtool_run("test", "rules", "lag-alerts.test.yml", cwd=RULES)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_promtool_fails_a_copy_without_hysteresis(tmp_path: Path) -> None:
    for name in ("lag-alerts.yml", "lag-alerts.test.yml"):
        shutil.copy(RULES / name, tmp_path / name)
    rules = tmp_path / "lag-alerts.yml"
    text = rules.read_text()
    assert "backbone:lag_seconds:max > 2\n" in text
    rules.write_text(text.replace("backbone:lag_seconds:max > 2\n", "backbone:lag_seconds:max > 5\n"))
    tested = _promtool_run("test", "rules", "lag-alerts.test.yml", cwd=tmp_path)
    assert tested.returncode != 0
    assert "alertname: LagSecondsWarning" in tested.stdout + tested.stderr


def _alerts() -> dict[str, dict[str, object]]:
    """Each alert of the YAML file: its `for`, severity, thresholds and statuses (read as text:
    the file keeps one layout)."""
    found: dict[str, dict[str, object]] = {}
    for block in re.split(r"\n      - ", (RULES / "lag-alerts.yml").read_text())[1:]:
        name = re.match(r"alert: (\w+)", block)
        if name is None:
            continue
        statuses = re.search(r'status=~?"([A-Z|]+)"', block)
        found[name.group(1)] = {
            "for": re.search(r"\n        for: (\w+)", block).group(1),
            "severity": re.search(r"severity: (\w+)", block).group(1),
            "thresholds": [Decimal(n) for n in re.findall(r"lag_seconds:max > ([\d.]+)", block)],
            "statuses": set(statuses.group(1).split("|")) if statuses else set(),
        }
    return found


def test_the_prometheus_rules_mirror_the_default_rules() -> None:
    alerts = _alerts()
    defaults = load_rules(None)
    assert sorted(alerts) == sorted(r.name for r in defaults)
    for rule in defaults:
        alert = alerts[rule.name]
        assert alert["for"] == duration_text(rule.for_), rule.name
        assert alert["severity"] == rule.severity.value.lower(), rule.name
        if rule.metric == "status":
            assert alert["statuses"] == {Status(s) for s in rule.statuses}, rule.name
        else:
            assert rule.metric == "lag_seconds"  # the only threshold metric of the defaults
            assert alert["thresholds"] == [rule.threshold, rule.clear_below], rule.name
