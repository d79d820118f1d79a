"""The lag monitor against the real broker, projector and database: a projector stopped with
SIGSTOP while marks arrive, killed, or rewound; a plain consumer group; alerts delivered exactly
once to a local HTTP receiver (across a monitor restart) and as Avro on the alerts topic."""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter

import pytest
from lag_support import (
    STALLED_RULE,
    MonitorProcess,
    Receiver,
    SteadyMarks,
    active,
    commit_plain,
    group_status,
    log_ends,
    rules_file,
    wait_until,
)
from support import read_topic, spawn_projector

from backbone.codec.avro import AvroCodec
from backbone.domain.events import Alert, AlertKind
from backbone.settings import Settings
from consumers.config import default_group_id

pytestmark = pytest.mark.integration

INTERVAL_S, WINDOW_S = 1, 6
RULES = STALLED_RULE + """
[[rule]]
name = "LagSeconds"
metric = "lag_seconds"
threshold = 2
clear_below = 1
for = "1s"
severity = "WARNING"

[[rule]]
name = "Rewind"
metric = "status"
statuses = ["REWIND"]
for = "0s"
severity = "WARNING"
"""


def _monitor(settings: Settings, rules: str, *extra: str) -> MonitorProcess:
    return MonitorProcess(settings, "--rules", rules, "--interval", str(INTERVAL_S), "--window", str(WINDOW_S),
                          *extra)


def _fired(monitor: MonitorProcess, group: str, topic: str, rule: str, state: str, timeout: float,
           since: int | None = None) -> dict:
    return monitor.wait_for(f"{rule} {state} for {group}", lambda e: e["event"] == "alert" and e["rule"] == rule
                            and e["state"] == state and (e["group"], e["topic"]) == (group, topic), timeout,
                            since)


def test_a_stopped_projector_fires_once_and_resolves_once_across_a_monitor_restart(
        created_topics: Settings, tmp_path) -> None:
    settings = created_topics
    topic = settings.topic_marketdata
    group = default_group_id("trading", [settings.topic_orders, settings.topic_marketdata])
    rules = rules_file(tmp_path, RULES)
    receiver = Receiver()
    projector = spawn_projector(settings, group, until_caught_up=False)
    monitor = second = None
    try:
        with SteadyMarks(settings):
            monitor = _monitor(settings, rules, "--webhook", receiver.url)
            monitor.wait_for("an evaluating pass with the projector keeping up", lambda e: active(e)
                             and group_status(e, group, topic) == "OK", timeout=60)
            assert monitor.alerts() == []
            for restart in (False, True):
                since = monitor.mark()
                projector.send_signal(signal.SIGSTOP)
                stopped = time.monotonic()
                _fired(monitor, group, topic, "Stalled", "firing", WINDOW_S + 10, since)
                _fired(monitor, group, topic, "LagSeconds", "firing", WINDOW_S + 10, since)
                # within one window of the stop (plus a pass to notice and one to deliver)
                assert time.monotonic() - stopped <= WINDOW_S + 2 * INTERVAL_S + 2
                if restart:  # while both alerts fire
                    assert monitor.stop() == ""
                    monitor = second = _monitor(settings, rules, "--webhook", receiver.url)
                    monitor.wait_for("an evaluating pass after the restart", active, timeout=60)
                since = monitor.mark()
                projector.send_signal(signal.SIGCONT)
                _fired(monitor, group, topic, "Stalled", "resolved", WINDOW_S + 30, since)
                _fired(monitor, group, topic, "LagSeconds", "resolved", WINDOW_S + 30, since)
            assert second is not None
            second.wait_for("every delivery made", lambda e: e["event"] == "pass" and e["deliveries_owed"] == 0,
                            timeout=30)
        # the restarted monitor fired nothing again: it went on from the state in Postgres
        for rule in ("Stalled", "LagSeconds"):
            assert [e["state"] for e in second.alerts(rule)] == ["resolved"]
        wait_until("8 webhook deliveries", lambda: len(receiver.bodies) >= 8, timeout=30)
        seen = Counter((b["rule"], b["group"], b["topic"], b["state"]) for b in receiver.bodies)
        assert seen == {(rule, group, topic, state): 2 for rule in ("Stalled", "LagSeconds")
                        for state in ("firing", "resolved")}, receiver.bodies
        assert len({b["id"] for b in receiver.bodies}) == 8
        alerts = [AvroCodec().decode(m.value()) for m in read_topic(settings, settings.topic_alerts)]
        assert all(isinstance(a, Alert) and a.source == group and a.topic == topic for a in alerts)
        kinds = Counter((a.message.split()[0], a.kind) for a in alerts)
        assert kinds == {("Stalled", AlertKind.LAG_STALLED): 2, ("Stalled", AlertKind.LAG_RECOVERED): 2,
                         ("LagSeconds", AlertKind.LAG_RISING): 2, ("LagSeconds", AlertKind.LAG_RECOVERED): 2}
        assert {r.key() for r in read_topic(settings, settings.topic_alerts)} == {group.encode()}
    finally:
        projector.send_signal(signal.SIGCONT)
        projector.kill()
        projector.communicate(timeout=30)
        for m in (monitor, second):
            if m is not None:
                m.kill()
        receiver.close()


def test_a_killed_projector_is_stop_and_an_offset_reset_is_rewind(created_topics: Settings, tmp_path) -> None:
    settings = created_topics
    topic = settings.topic_marketdata
    group = default_group_id("trading", [settings.topic_orders, settings.topic_marketdata])
    plain = f"{group}-plain"
    projector = spawn_projector(settings, group, until_caught_up=False)
    monitor = None
    try:
        with SteadyMarks(settings) as marks:
            wait_until("a few marks", lambda: marks.sent > 50)
            commit_plain(settings, plain, {p: min(end, 5) for p, end in log_ends(settings).items()})
            monitor = _monitor(settings, rules_file(tmp_path, RULES))
            monitor.wait_for("an evaluating pass", lambda e: active(e) and group_status(e, group, topic) == "OK",
                             timeout=60)
            # the plain group is judged from its Kafka offsets: it stands still with records waiting
            monitor.wait_for("the plain group stalled or stopped",
                             lambda e: group_status(e, plain, topic) in ("STALL", "STOP"), timeout=30)
            projector.kill()
            projector.communicate(timeout=30)
            since = monitor.mark()
            monitor.wait_for("STOP of the killed projector", lambda e: group_status(e, group, topic) == "STOP",
                             timeout=2 * WINDOW_S + 10)
            _fired(monitor, group, topic, "Stalled", "firing", 10, since)
            since = monitor.mark()
            commit_plain(settings, plain, {p: min(end, 1) for p, end in log_ends(settings).items()})  # an offset reset
            monitor.wait_for("REWIND of the reset group", lambda e: group_status(e, plain, topic) == "REWIND",
                             timeout=10)
            _fired(monitor, plain, topic, "Rewind", "firing", 10, since)
        assert monitor.stop() == ""
    finally:
        if projector.poll() is None:
            projector.kill()
            projector.communicate(timeout=30)
        if monitor is not None:
            monitor.kill()


def test_a_failing_webhook_is_retried_and_never_stops_the_evaluation(created_topics: Settings, tmp_path) -> None:
    """A receiver answering 500, then hanging, then well: the passes go on at their interval,
    the failures are counted, and each transition is delivered once it answers."""
    settings = created_topics
    topic = settings.topic_marketdata
    plain = "lag-webhook-plain"
    receiver = Receiver()
    receiver.status = 500
    monitor = None
    try:
        with SteadyMarks(settings) as marks:
            wait_until("a few marks", lambda: marks.sent > 20)
            commit_plain(settings, plain, dict.fromkeys(range(settings.partitions), 0))
            monitor = _monitor(settings, rules_file(tmp_path, RULES), "--webhook", receiver.url)
            _fired(monitor, plain, topic, "Stalled", "firing", WINDOW_S + 20, since=0)
            failed = monitor.wait_for("a failed delivery", lambda e: e["event"] == "pass" and any(
                "webhook failed: " in f and "500" in f for f in e["sink_failures"]), timeout=30)
            assert failed["deliveries_owed"] >= 1
            receiver.status, receiver.hang_s = 200, 5.0  # answers after the sink's 2 s timeout
            hung = monitor.wait_for("a timed-out delivery", lambda e: e["event"] == "pass" and any(
                "webhook failed" in f for f in e["sink_failures"]), timeout=60)
            assert hung["seconds"] < 4, hung  # one timeout a pass at most, never the receiver's hang
            receiver.hang_s = 0.0
            monitor.wait_for("the delivery made", lambda e: e["event"] == "pass" and e["deliveries_owed"] == 0,
                             timeout=120)
        fired = [b for b in receiver.bodies if (b["rule"], b["state"]) == ("Stalled", "firing")]
        assert len({b["id"] for b in fired}) == 1
        assert monitor.stop() == ""
    finally:
        if monitor is not None:
            monitor.kill()
        receiver.close()


def _run(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    import sys

    from support import settings_env

    return subprocess.run([sys.executable, "-m", "cli.main", *args], env=settings_env(settings),
                          capture_output=True, text=True, timeout=120)


def test_lag_of_an_unknown_group_is_one_line_and_exit_1(created_topics: Settings) -> None:
    done = _run(created_topics, "lag", "--group", "no-such-group", "--interval", "0.2")
    assert done.returncode == 1, done
    assert done.stderr.startswith("error: unknown group 'no-such-group'") and done.stderr.count("\n") == 1


def test_a_malformed_rules_file_names_its_line(created_topics: Settings, tmp_path) -> None:
    path = rules_file(tmp_path, '[[rule]]\nname = "X"\nmetric = "lag_records"\nthreshold = "many"\n'
                                'for = "1m"\nseverity = "WARNING"\n')
    done = _run(created_topics, "lag", "monitor", "--rules", path, "--passes", "1")
    assert done.returncode == 2, done
    assert f"{path}:4" in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_the_monitor_goes_on_without_kafka_or_postgres(created_topics: Settings, tmp_path) -> None:
    """A broker that cannot be reached, then a database that cannot: each pass says so on its
    line and the monitor keeps evaluating what it can."""
    settings = created_topics
    no_kafka = settings.with_overrides(kafka_bootstrap_servers="127.0.0.1:9")
    done = _run(no_kafka, "lag", "monitor", "--passes", "2", "--interval", "0.5", "--window", "1")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and all("Kafka" in line for line in lines), lines
    commit_plain(settings, "lag-no-db-plain", {0: 0})
    no_db = settings.with_overrides(database_url="postgresql+psycopg://backbone@127.0.0.1:9/none")
    done = _run(no_db, "lag", "monitor", "--passes", "3", "--interval", "0.5", "--window", "1", "--json")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done
    import json

    passes = [json.loads(line) for line in done.stdout.splitlines()]
    assert [p["event"] for p in passes] == ["pass"] * 3
    assert all(any(x.startswith("Postgres") for x in p["problems"]) for p in passes), passes
    assert any(g["group"] == "lag-no-db-plain" for g in passes[-1]["groups"])
