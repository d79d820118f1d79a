"""Threshold rules for lag alerts, read from a TOML file (`backbone lag monitor --rules FILE`).

Each `[[rule]]` table is one `Rule` (monitoring.model); its keys:

    name         unique; also the alert's name (letters, digits, `_`, `-`, `.`)
    metric       "lag_records", "lag_seconds" (a group's largest on a topic), or "status"
    threshold    lag metrics: fires above it (a number, 0 or more)
    clear_below  lag metrics, optional: resolves at or under it (hysteresis; default the threshold)
    statuses     metric "status": fires while a partition has one of them, e.g. ["STALL", "STOP"]
    for          how long the condition must hold before it fires: "0s", "30s", "5m", "1h30m"
    severity     "INFO", "WARNING" or "CRITICAL"
    group        shell-style pattern of consumer groups (default "*")
    topic        shell-style pattern of topics (default "*")
    source       "postgres" or "kafka" (default: the group's authoritative offsets, see alerting)

Without --rules the shipped `monitoring/default_rules.toml` applies. A file that cannot be used
raises `RulesError` naming the file and the line (`FILE:LINE: what is wrong`).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any, get_args

from backbone.errors import ConfigError
from monitoring.model import Metric, Rule, Severity, Source, Status

DEFAULT_RULES = "default_rules.toml"

_KEYS = {"name", "metric", "threshold", "clear_below", "statuses", "for", "severity", "group", "topic", "source"}
_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_RULE_HEADER = re.compile(r"\[\[\s*rule\s*\]\]")
_TABLE_HEADER = re.compile(r"\[+\s*([A-Za-z0-9_-]+|\"[^\"]*\")")
_KEY = re.compile(r"([A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')\s*=")
_DECODE_AT = re.compile(r"(.*) \(at line (\d+), column (\d+)\)$", re.DOTALL)


class RulesError(ConfigError):
    """A rules file that cannot be used; the message names the file and the line."""


class _Lines:
    """Where each key of the file is written: tomllib gives values, not positions."""

    def __init__(self, text: str) -> None:
        self.top: dict[str, int] = {}
        self.rules: list[tuple[int, dict[str, int]]] = []  # per [[rule]]: its header line, its keys' lines
        keys = self.top
        for number, line in enumerate(text.splitlines(), 1):
            stripped = line.strip()
            if _RULE_HEADER.match(stripped):
                keys = {}
                self.rules.append((number, keys))
            elif header := _TABLE_HEADER.match(stripped):
                self.top.setdefault(header.group(1).strip("\"'"), number)
                keys = {}
            elif key := _KEY.match(stripped):
                keys.setdefault(key.group(1).strip("\"'"), number)

    def of_rule(self, index: int, key: str | None = None) -> int:
        if index >= len(self.rules):  # written some other way (an inline array): the rule key's line
            return self.top.get("rule", 1)
        header, keys = self.rules[index]
        return keys.get(key, header) if key is not None else header


def _duration(value: object) -> timedelta | None:
    if not isinstance(value, str):
        return None
    if value.strip() == "0":
        return timedelta(0)
    match = _DURATION.fullmatch(value.strip())
    if match is None or not any(match.groups()):
        return None
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def duration_text(span: timedelta) -> str:
    """`span` the way rules files write it: "0s", "30s", "1m", "1h30m"."""
    seconds = int(span.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    text = "".join(f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (seconds, "s")) if n)
    return text or "0s"


def _number(value: object) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    try:
        number = Decimal(str(value)) if isinstance(value, float | str) else None
    except InvalidOperation:
        return None
    return number if number is not None and number.is_finite() else None


def _rule(table: dict[str, Any], where: Callable[[str | None, str], RulesError]) -> Rule:
    """One rule from its table; `where(key, message)` is the error at that key's line (None: the
    rule's header)."""
    for key in table:
        if key not in _KEYS:
            raise where(key, f"unknown key {key!r} (known: {', '.join(sorted(_KEYS))})")
    for key in ("name", "metric", "for", "severity"):
        if key not in table:
            raise where(None, f"missing {key!r}")
    name = table["name"]
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise where("name", f"name {name!r}: letters, digits, '_', '-' and '.' only")
    metric = table["metric"]
    if metric not in get_args(Metric):
        raise where("metric", f"metric {metric!r}: one of {', '.join(get_args(Metric))}")
    for_ = _duration(table["for"])
    if for_ is None:
        raise where("for", f"for {table['for']!r}: a duration such as \"0s\", \"30s\", \"5m\", \"1h\"")
    severity = str(table["severity"]).upper()
    if severity not in Severity.__members__:
        raise where("severity", f"severity {table['severity']!r}: one of {', '.join(Severity)}")
    patterns = {}
    for key in ("group", "topic"):
        pattern = table.get(key, "*")
        if not isinstance(pattern, str) or not pattern:
            raise where(key, f"{key} {pattern!r}: a shell-style pattern such as \"backbone-*\"")
        patterns[key] = pattern
    source = table.get("source")
    if source is not None and source not in get_args(Source):
        raise where("source", f"source {source!r}: one of {', '.join(get_args(Source))}")
    threshold = clear_below = None
    statuses: frozenset[Status] = frozenset()
    if metric == "status":
        for key in ("threshold", "clear_below"):
            if key in table:
                raise where(key, f"{key!r} does not apply to metric 'status' (it takes 'statuses')")
        listed = table.get("statuses")
        if listed is None:
            raise where(None, "missing 'statuses' (metric 'status')")
        judged = [s for s in Status if s is not Status.OK]
        if (not isinstance(listed, list) or not listed
                or any(s not in judged for s in listed)):
            raise where("statuses", f"statuses {listed!r}: a list of {', '.join(judged)}")
        statuses = frozenset(Status(s) for s in listed)
    else:
        if "statuses" in table:
            raise where("statuses", f"'statuses' does not apply to metric {metric!r} (it takes 'threshold')")
        if "threshold" not in table:
            raise where(None, f"missing 'threshold' (metric {metric!r})")
        threshold = _number(table["threshold"])
        if threshold is None or threshold < 0:
            raise where("threshold", f"threshold {table['threshold']!r}: a number, 0 or more")
        if "clear_below" in table:
            clear_below = _number(table["clear_below"])
            if clear_below is None or not 0 <= clear_below <= threshold:
                raise where("clear_below", f"clear_below {table['clear_below']!r}: a number from 0 to the "
                                           f"threshold ({threshold})")
    return Rule(name=name, metric=metric, severity=Severity(severity), for_=for_, threshold=threshold,
                clear_below=clear_below, statuses=statuses, group=patterns["group"], topic=patterns["topic"],
                source=source)


def parse_rules(text: str, source: str) -> list[Rule]:
    """The rules of a TOML document; `source` names it in errors (`source:line: what`)."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        found = _DECODE_AT.match(str(e))
        if found is None:
            raise RulesError(f"{source}: {e}") from None
        raise RulesError(f"{source}:{found.group(2)}: {found.group(1)} (column {found.group(3)})") from None
    lines = _Lines(text)
    for key in document:
        if key != "rule":
            raise RulesError(f"{source}:{lines.top.get(key, 1)}: unknown key {key!r}: rules are [[rule]] tables")
    tables = document.get("rule", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise RulesError(f"{source}:{lines.top.get('rule', 1)}: 'rule' must be [[rule]] tables")
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for index, table in enumerate(tables):
        def where(key: str | None, message: str, index: int = index, table: dict[str, Any] = table) -> RulesError:
            label = f"rule {table['name']!r}" if isinstance(table.get("name"), str) else f"rule {index + 1}"
            return RulesError(f"{source}:{lines.of_rule(index, key)}: {label}: {message}")

        rule = _rule(table, where)
        if rule.name in seen:
            raise where("name", f"the name is taken by the rule at line {seen[rule.name]}")
        seen[rule.name] = lines.of_rule(index)
        rules.append(rule)
    return rules


def load_rules(path: Path | None) -> list[Rule]:
    """The rules of `path`, or the shipped defaults (`monitoring/default_rules.toml`) for None."""
    if path is None:
        text = resources.files("monitoring").joinpath(DEFAULT_RULES).read_text(encoding="utf-8")
        return parse_rules(text, f"monitoring/{DEFAULT_RULES}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise RulesError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise RulesError(f"{path}: cannot read the rules file: {e.strerror}") from None
    return parse_rules(text, str(path))
