"""The rules file: the shipped defaults, every key, and each malformed file refused with its
file and line (monitoring.rules, pure)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backbone.errors import ConfigError
from monitoring.model import Rule, Severity, Status
from monitoring.rules import RulesError, duration_text, load_rules, parse_rules

FULL = """\
# a comment
[[rule]]
name = "orders-behind"
metric = "lag_seconds"
threshold = 2.5
clear_below = "1.25"
for = "1h30m"
severity = "critical"
group = "backbone-*"
topic = "trading.orders"
source = "postgres"

[[rule]]
name = "stuck"
metric = "status"
statuses = [
  "STALL",
  "STOP",
]
for = "0"
severity = "INFO"
"""


def test_every_key() -> None:
    assert parse_rules(FULL, "r.toml") == [
        Rule(name="orders-behind", metric="lag_seconds", severity=Severity.CRITICAL,
             for_=timedelta(hours=1, minutes=30), threshold=Decimal("2.5"), clear_below=Decimal("1.25"),
             group="backbone-*", topic="trading.orders", source="postgres"),
        Rule(name="stuck", metric="status", severity=Severity.INFO, for_=timedelta(0),
             statuses=frozenset({Status.STALL, Status.STOP})),
    ]


def test_the_shipped_defaults() -> None:
    rules = {r.name: r for r in load_rules(None)}
    assert sorted(rules) == ["LagRewind", "LagSecondsCritical", "LagSecondsWarning", "LagStalled", "LagUnknown"]
    warning, critical = rules["LagSecondsWarning"], rules["LagSecondsCritical"]
    assert (warning.threshold, warning.clear_below, warning.for_, warning.severity) == (
        Decimal(5), Decimal(2), timedelta(seconds=30), Severity.WARNING)
    assert (critical.threshold, critical.clear_below, critical.for_, critical.severity) == (
        Decimal(60), Decimal(30), timedelta(minutes=1), Severity.CRITICAL)
    assert (rules["LagStalled"].statuses, rules["LagStalled"].for_) == ({Status.STALL, Status.STOP},
                                                                        timedelta(minutes=1))
    assert (rules["LagRewind"].statuses, rules["LagRewind"].for_) == ({Status.REWIND}, timedelta(0))
    assert (rules["LagUnknown"].statuses, rules["LagUnknown"].severity) == ({Status.ERR}, Severity.WARNING)
    assert all(r.group == r.topic == "*" and r.source is None for r in rules.values())


def test_a_file(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(FULL)
    assert [r.name for r in load_rules(path)] == ["orders-behind", "stuck"]


def test_an_empty_file_has_no_rules() -> None:
    assert parse_rules("# nothing yet\n", "r.toml") == []


RULE = '[[rule]]\nname = "x"\nmetric = "lag_records"\nthreshold = 10\nfor = "30s"\nseverity = "WARNING"\n'


@pytest.mark.parametrize(("text", "message"), [
    ("[[rule]]\nname = \"x\"\nfor = 30s\n",
     "r.toml:3: Expected newline or end of document after a statement (column 9)"),
    (RULE + "treshold = 5\n", "r.toml:7: rule 'x': unknown key 'treshold' (known: clear_below, for, group, metric, "
                              "name, severity, source, statuses, threshold, topic)"),
    (RULE.replace('"lag_records"', '"lag"'), "r.toml:3: rule 'x': metric 'lag': one of lag_records, lag_seconds, "
                                             "status"),
    (RULE.replace("= 10", "= -1"), "r.toml:4: rule 'x': threshold -1: a number, 0 or more"),
    (RULE.replace('for = "30s"\n', ""), "r.toml:1: rule 'x': missing 'for'"),
    (RULE.replace('"30s"', '"30 seconds"'),
     "r.toml:5: rule 'x': for '30 seconds': a duration such as \"0s\", \"30s\", \"5m\", \"1h\""),
    (RULE.replace('"30s"', "30"), "r.toml:5: rule 'x': for 30: a duration such as \"0s\", \"30s\", \"5m\", \"1h\""),
    (RULE.replace('"WARNING"', '"PAGE"'), "r.toml:6: rule 'x': severity 'PAGE': one of INFO, WARNING, CRITICAL"),
    (RULE.replace("threshold = 10\n", ""), "r.toml:1: rule 'x': missing 'threshold' (metric 'lag_records')"),
    (RULE.replace("= 10", "= true"), "r.toml:4: rule 'x': threshold True: a number, 0 or more"),
    (RULE.replace("= 10", '= "ten"'), "r.toml:4: rule 'x': threshold 'ten': a number, 0 or more"),
    (RULE + "clear_below = 11\n", "r.toml:7: rule 'x': clear_below 11: a number from 0 to the threshold (10)"),
    (RULE + 'statuses = ["STALL"]\n', "r.toml:7: rule 'x': 'statuses' does not apply to metric 'lag_records' "
                                      "(it takes 'threshold')"),
    (RULE + 'source = "zookeeper"\n', "r.toml:7: rule 'x': source 'zookeeper': one of postgres, kafka"),
    (RULE + 'group = ""\n', "r.toml:7: rule 'x': group '': a shell-style pattern such as \"backbone-*\""),
    (RULE.replace('"x"', '"a b"'), "r.toml:2: rule 'a b': name 'a b': letters, digits, '_', '-' and '.' only"),
    (RULE.replace('name = "x"\n', ""), "r.toml:1: rule 1: missing 'name'"),
    ("\n" + RULE + "\n" + RULE, "r.toml:10: rule 'x': the name is taken by the rule at line 2"),
    ('[[rule]]\nname = "s"\nmetric = "status"\nfor = "1m"\nseverity = "INFO"\n',
     "r.toml:1: rule 's': missing 'statuses' (metric 'status')"),
    ('[[rule]]\nname = "s"\nmetric = "status"\nstatuses = ["OK"]\nfor = "1m"\nseverity = "INFO"\n',
     "r.toml:4: rule 's': statuses ['OK']: a list of WARN, STALL, STOP, REWIND, ERR"),
    ('[[rule]]\nname = "s"\nmetric = "status"\nstatuses = ["STALL"]\nthreshold = 1\nfor = "1m"\nseverity = "INFO"\n',
     "r.toml:5: rule 's': 'threshold' does not apply to metric 'status' (it takes 'statuses')"),
    (RULE + "\n[defaults]\nfor = \"1m\"\n", "r.toml:8: unknown key 'defaults': rules are [[rule]] tables"),
    ("rule = 3\n", "r.toml:1: 'rule' must be [[rule]] tables"),
])
def test_a_malformed_file_is_refused_at_its_line(text: str, message: str) -> None:
    with pytest.raises(RulesError) as refused:
        parse_rules(text, "r.toml")
    assert str(refused.value) == message


def test_the_error_is_a_configuration_error(tmp_path: Path) -> None:
    assert issubclass(RulesError, ConfigError)  # the CLI's exit code 2
    with pytest.raises(RulesError, match=r"^.*missing\.toml: cannot read the rules file: No such file or directory$"):
        load_rules(tmp_path / "missing.toml")
    (tmp_path / "latin1.toml").write_bytes(b"# caf\xe9\n")
    with pytest.raises(RulesError, match=r"latin1\.toml: not UTF-8 text"):
        load_rules(tmp_path / "latin1.toml")


@given(st.integers(0, 10 * 24 * 3600))
def test_durations_read_back_as_written(seconds: int) -> None:
    span = timedelta(seconds=seconds)
    [rule] = parse_rules(RULE.replace('"30s"', f'"{duration_text(span)}"'), "r.toml")
    assert rule.for_ == span
