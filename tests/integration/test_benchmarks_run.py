"""Every benchmark script runs to its figures on the real stack, at tiny sizes.

The benchmarks are scripts, not tests: their speed is never asserted. But a script broken by a
change elsewhere (the naive projector of benchmarks/project.py called `committed()` without the
batch it takes, and nothing ran it until the next benchmark run) is a defect found late,
so each one runs here once, on a few hundred records, and must print every figure it promises."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support import settings_env

from backbone.settings import Settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
NUMBER = r"[\d,]+(?:\.\d+)?"


def run_benchmark(settings: Settings, module: str, *args: str) -> str:
    """The script's stdout; fails the test on a non-zero exit, with its stderr."""
    done = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", *args], cwd=ROOT,
                          env=settings_env(settings), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"benchmarks.{module} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def figure(output: str, pattern: str) -> float:
    """The number `pattern` (a regex with one group) captures in `output`; fails if it is absent."""
    found = re.search(pattern, output)
    assert found, f"no match for {pattern!r} in:\n{output}"
    return float(found.group(1).replace(",", ""))


def test_project_throughput_prints_the_three_rates_and_their_ratios(base_settings: Settings) -> None:
    out = run_benchmark(base_settings, "project", "--events", "1500", "--naive-events", "100")
    for label in (r"\(a\) raw consume\+decode", r"\(b\) projector", r"\(b2\) two projector processes",
                  r"\(c\) naive"):
        assert figure(out, label + rf".*?: ({NUMBER}) events/s") > 0
    assert figure(out, rf"b/a = ({NUMBER})") > 0 and figure(out, rf"b/c = ({NUMBER})x") > 0


def test_project_latency_prints_percentiles(base_settings: Settings) -> None:
    out = run_benchmark(base_settings, "project", "--latency", "--rate", "300", "--seconds", "2",
                        "--linger-ms", "5")
    assert figure(out, rf": ({NUMBER}) events projected") == 600
    p50, p99 = figure(out, rf"p50 ({NUMBER}) ms"), figure(out, rf"p99 ({NUMBER}) ms")
    assert 0 < p50 <= p99


def test_history_prints_a_row_per_size_and_mode(base_settings: Settings) -> None:
    out = run_benchmark(base_settings, "history", "--sizes", "1500", "--rate", "300", "--seconds", "2",
                        "--extra", "400")
    rows = re.findall(rf"^1,500\s+(bounded|everything)((?:\s+{NUMBER}){{13}})\s*$", out, re.MULTILINE)
    assert [mode for mode, _figures in rows] == ["bounded", "everything"], out
    figures = {mode: [float(f.replace(",", "")) for f in text.split()] for mode, text in rows}
    assert all(f[0] > 0 and f[-1] > 0 for f in figures.values())  # events/s, max latency
    change_s, change_kb, records = figures["bounded"][6:9]
    assert change_s > 0 and change_kb > 0 and records > 0  # a change on the whole snapshot, over the extra


def test_replay_prints_the_full_replay_and_the_as_of_table(base_settings: Settings) -> None:
    out = run_benchmark(base_settings, "replay", "--events", "2000", "--distances", "0,300", "--runs", "1")
    assert figure(out, rf"\(a\) full replay of ({NUMBER}) records") > 0
    rows = re.findall(rf"^\s*(early|late) \(\d+%\)\s+({NUMBER})\s+({NUMBER})", out, re.MULTILINE)
    assert sorted((label, distance) for label, distance, _read in rows) == [
        ("early", "0"), ("early", "300"), ("late", "0"), ("late", "300")], out


def test_produce_prints_both_rates(base_settings: Settings) -> None:
    out = run_benchmark(base_settings, "produce", "--events", "1000", "--runs", "1")
    assert figure(out, rf"avro encode\+produce: median ({NUMBER}) events/s") > 0
    assert figure(out, rf"raw bytes produce:\s+median ({NUMBER}) events/s") > 0


def test_codec_prints_every_data_set(base_settings: Settings) -> None:
    """No I/O here, but a script like the others: the same check."""
    out = json.loads(run_benchmark(base_settings, "codec", "--records", "200", "--runs", "1", "--fastavro",
                                   "--json"))
    sets = sorted(name for name in out if name != "python_loop_ns")
    assert len(sets) == 5 and "realistic, Python paths" in sets and "unique-decimals, Python" in sets, sets
    assert "realistic via fastavro" in sets and {name.split(",")[0] for name in sets} == {
        "realistic", "unique-decimals", "realistic via fastavro"}, sets
    for name, figures in out.items():
        if name != "python_loop_ns":
            assert figures["records"] == 200 and figures["encodes_per_s"] > 0 and figures["decodes_per_s"] > 0


def test_audit_prints_every_figure_side_by_side(base_settings: Settings) -> None:
    """CPU is counted in clock ticks: a run this short may see none, so only its presence counts."""
    out = run_benchmark(base_settings, "audit", "--events", "8000", "--orders", "20", "--warm-up", "2",
                        "--trade-runs", "1")
    for name in ("trading", "audit"):
        assert figure(out, rf"{name} projection, after the first batch: ({NUMBER}) events/s") > 0
        assert figure(out, rf"{name} projection, after the first batch: .*postgres ({NUMBER}) µs") >= 0
    assert re.search(rf"ceiling from the row cost: ({NUMBER} events/s|unknown)", out), out
    assert figure(out, rf"audit / trading projection, after the first batch: ({NUMBER})") > 0
    for label in ("audit order", r"audit order --verify"):
        assert figure(out, rf"(?m)^{label}: ({NUMBER}) random orders") == 20
        p50, p99 = (figure(out, rf"(?m)^{label}: .*{p} ({NUMBER}) ms") for p in ("p50", "p99"))
        assert 0 < p50 <= p99
    assert figure(out, rf"findings ({NUMBER})") == 0
    assert figure(out, rf"audit trades, .*\(({NUMBER}) fills") > 0 and figure(out, rf"median ({NUMBER}) ms") > 0
    assert figure(out, rf"audit verify: ({NUMBER}) records/s \(8,000 records") > 0 and "; OK)" in out


def test_lag_prints_the_pass_times_and_the_monitors_cpu(base_settings: Settings) -> None:
    out = run_benchmark(base_settings, "lag", "--groups", "3", "--partitions", "2", "--records", "100",
                        "--passes", "2", "--cpu-seconds", "2", "--interval", "0.5")
    assert figure(out, rf"first pass \(nothing cached\): ({NUMBER}) s for 12 partitions") > 0
    assert figure(out, rf"({NUMBER}) records read for their times") > 0
    assert figure(out, rf"groups moved since the last: median ({NUMBER}) s") > 0
    assert figure(out, rf"interval: ({NUMBER}) of a core") >= 0
