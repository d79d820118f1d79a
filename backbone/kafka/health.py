"""Fail fast, say it once: the Kafka clients' log, the classification of librdkafka's errors,
and a bounded reachability probe.

librdkafka retries a broker it cannot reach for ever and logs the same failure on every
attempt (about ten a second with its default backoff) straight to stderr, while a metadata
request waits out its whole timeout and then reports a bare "Broker transport failure".

- `FoldingLog` is the `logger` and `error_cb` of every client the project builds
  (`client_config`): each distinct line goes once to the Python logger
  ``backbone.kafka.librdkafka``, its repeats are counted and said as one line with the count (at
  most once per `every_s`, and at `flush()`), and librdkafka prints nothing itself. It keeps the
  errors it saw, so `verdict()` can tell a failure retrying cannot cure.
- `check_reachable(settings)` is what commands run before their work: it returns as soon as a
  broker answers, raises as soon as a failure retrying cannot cure is seen, and raises
  `KafkaUnavailable` once `settings.kafka_connect_timeout_s` has passed without an answer.

`classify` sorts one librdkafka error; what `check_reachable` does with each kind:

- auth: _AUTHENTICATION (SASL refused), a failed TLS handshake: KafkaAuthError at once
- resolve: _RESOLVE: KafkaUnavailable at once when every bootstrap address is unknown (not when
  the resolver merely did not answer: "temporary failure"), else like transport
- transport: _TRANSPORT, _ALL_BROKERS_DOWN, _TIMED_OUT: KafkaUnavailable after the timeout
- fatal: err.fatal(): KafkaError at once
- None: anything else (librdkafka recovers, or the caller sees it)
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import KafkaException, TopicCollection
from confluent_kafka.admin import AclOperation, AdminClient

from backbone.errors import ConfigError, KafkaAuthError, KafkaAuthorizationError, KafkaError, KafkaUnavailable
from backbone.settings import Settings

Kind = Literal["auth", "resolve", "transport", "fatal"]

LOGGER_NAME = "backbone.kafka.librdkafka"
# A library logs, the application decides what is shown: without this, Python's last-resort
# handler would print each first line to stderr beside the command's own one-line error.
logging.getLogger(LOGGER_NAME).addHandler(logging.NullHandler())

# the broker's ACLs refused an operation: permanent, like refused credentials (exit 4)
_AUTHORIZATION_CODES = {RdKafkaError.TOPIC_AUTHORIZATION_FAILED, RdKafkaError.GROUP_AUTHORIZATION_FAILED,
                        RdKafkaError.CLUSTER_AUTHORIZATION_FAILED, RdKafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED}
_TRANSPORT_CODES = {RdKafkaError._TRANSPORT, RdKafkaError._ALL_BROKERS_DOWN, RdKafkaError._TIMED_OUT}
# what changes between two reports of the same failure
_ATTEMPT_TAIL = re.compile(r"\s*\(after \d+ms in state \w+(?:, \d+ identical error\(s\) suppressed)?\)\s*$")
_THREAD = re.compile(r"^\[thrd:[^\]]*\]:\s*")
_BROKER_PREFIX = re.compile(r"^\S+/(?:bootstrap|\d+): ")
_UNRESOLVED = re.compile(r"Failed to resolve '([^']+)'")
# getaddrinfo's EAI_AGAIN: the resolver did not answer, which a later attempt may change
_TRANSIENT_DNS = ("temporary failure", "try again")
_ERRORS: dict[Kind | None, type[KafkaError]] = {"auth": KafkaAuthError, "resolve": KafkaUnavailable,
                                                "transport": KafkaUnavailable}
_STEP_S = 0.25  # the probe's metadata request timeout: how often it looks at what librdkafka said
_MAX_LINES = 1000  # distinct lines remembered per log (a long run could otherwise grow it)


def classify(err: RdKafkaError) -> Kind | None:
    """The kind of failure one librdkafka error reports (table in the module docstring)."""
    if err.fatal():
        return "fatal"
    code = err.code()
    if code == RdKafkaError._AUTHENTICATION or "SSL handshake failed" in (err.str() or ""):
        return "auth"
    if code == RdKafkaError._RESOLVE:
        return "resolve"
    if code in _TRANSPORT_CODES:
        return "transport"
    return None


def reason(text: str) -> str:
    """librdkafka's text without the parts that differ between repeats (thread, timing)."""
    return _ATTEMPT_TAIL.sub("", _THREAD.sub("", text)).strip()


def bootstrap_addresses(bootstrap: str) -> set[str]:
    """'host:port' of each bootstrap server as librdkafka names it in "Failed to resolve"."""
    out = set()
    for entry in bootstrap.split(","):
        entry = entry.strip().split("://", 1)[-1]
        if entry:
            out.add(entry if entry.rsplit(":", 1)[-1].isdigit() else f"{entry}:9092")
    return out


def translate(err: RdKafkaError | KafkaException, what: str) -> KafkaError:
    """A librdkafka error as the project's error of its kind, one line: "`what`: reason"."""
    if isinstance(err, KafkaException):
        err = err.args[0] if err.args and isinstance(err.args[0], RdKafkaError) else RdKafkaError(
            RdKafkaError._FAIL, str(err))
    cls = KafkaAuthorizationError if err.code() in _AUTHORIZATION_CODES else _ERRORS.get(classify(err), KafkaError)
    return cls(f"{what}: {reason(err.str())}", code=err.code(), retriable=err.retriable())


@dataclass
class _Line:
    level: int
    said_at: float
    unsaid: int = 0


class FoldingLog:
    """`logger` and `error_cb` of a client: each distinct line said once, repeats counted.

    confluent-kafka calls these from the thread that polls the client (poll, consume, flush),
    so a client that is never polled says nothing; the lock covers clients polled from several
    threads."""

    def __init__(self, logger: logging.Logger | None = None, *, level: int | None = None, every_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._logger = logger or logging.getLogger(LOGGER_NAME)
        self._level = level  # every line at this level instead of librdkafka's
        self._every_s, self._clock = every_s, clock
        self._lock = threading.Lock()
        self._lines: dict[str, _Line] = {}
        #: the first reason seen of each kind of error, and the latest reason of any error
        self.first: dict[Kind, str] = {}
        self.last: str | None = None
        #: bootstrap addresses the resolver said do not exist
        self.unresolved: set[str] = set()

    def callbacks(self) -> dict[str, Any]:
        """The librdkafka configuration entries that route a client's log and errors here."""
        return {"logger": self, "error_cb": self.error}

    def log(self, level: int, fmt: str, *args: object) -> None:
        """confluent-kafka's logger interface: log(level, "%s [%s] %s", facility, client, text)."""
        if len(args) == 3:
            if args[0] == "FAIL":  # a broker connection failed: error_cb gets the same text
                return
            self._say(level, str(args[2]))
        else:
            self._say(level, fmt % args)

    def error(self, err: RdKafkaError) -> None:
        """error_cb: remember what kind of failure it was, and say it like a log line."""
        kind, text = classify(err), reason(err.str())
        with self._lock:
            if kind is not None:
                self.first.setdefault(kind, text)
            if err.code() != RdKafkaError._ALL_BROKERS_DOWN:  # "1/1 brokers are down" says no more
                self.last = text
            if kind == "resolve" and not any(t in text.lower() for t in _TRANSIENT_DNS):
                self.unresolved.update(_UNRESOLVED.findall(text))
        self._say(logging.ERROR, err.str())

    def _say(self, level: int, text: str) -> None:
        key = reason(text)
        now = self._clock()
        with self._lock:
            line = self._lines.get(key)
            if line is None:
                if len(self._lines) >= _MAX_LINES:
                    self._lines.clear()
                self._lines[key] = _Line(level, now)
                repeats = 0
            else:
                line.unsaid += 1
                if now - line.said_at < self._every_s:
                    return
                repeats, line.unsaid, line.said_at = line.unsaid, 0, now
        self._emit(level if self._level is None else self._level, key, repeats)

    def _emit(self, level: int, key: str, repeats: int) -> None:
        if repeats:
            self._logger.log(level, "%s (%d more time%s)", key, repeats, "" if repeats == 1 else "s")
        else:
            self._logger.log(level, "%s", key)

    def flush(self) -> None:
        """Say the repeats not said yet (call when the client is done)."""
        with self._lock:
            pending = [(key, line.level if self._level is None else self._level, line.unsaid)
                       for key, line in self._lines.items() if line.unsaid]
            for key, *_ in pending:
                self._lines[key].unsaid = 0
        for key, level, repeats in pending:
            self._emit(level, key, repeats)

    def verdict(self, settings: Settings) -> KafkaError | None:
        """The failure seen so far that retrying cannot cure, as the error to raise; None while
        waiting may still help."""
        with self._lock:
            first, unresolved = dict(self.first), set(self.unresolved)
        where = settings.kafka_bootstrap_servers
        if "fatal" in first:
            return KafkaError(f"Kafka client at {where} failed for good: {_short(first['fatal'])}")
        if "auth" in first:
            return KafkaAuthError(f"Kafka at {where} refused the connection"
                                  f"{f' of user {user}' if (user := _sasl_user(settings)) else ''}: "
                                  f"{_short(first['auth'])} "
                                  f"(check {_auth_settings(first['auth'])})")
        addresses = bootstrap_addresses(where)
        if addresses and addresses <= unresolved:
            return KafkaUnavailable(f"unknown Kafka broker host: {_short(first['resolve'])} "
                                    "(check BACKBONE_KAFKA_BOOTSTRAP_SERVERS)")
        return None

    def unreachable(self, settings: Settings, waited_s: float) -> KafkaUnavailable:
        """The error for "no broker answered within `waited_s`", with the last reason seen."""
        with self._lock:
            last = self.last
        return KafkaUnavailable(f"no Kafka broker reachable at {settings.kafka_bootstrap_servers} within "
                                f"{waited_s:g} s: {_short(last) if last else 'no answer'} (check "
                                "BACKBONE_KAFKA_BOOTSTRAP_SERVERS; the wait is BACKBONE_KAFKA_CONNECT_TIMEOUT_S)")


def _short(text: str) -> str:
    """A reason without the broker it came from (the message names the bootstrap servers)."""
    return _BROKER_PREFIX.sub("", text).rstrip(" :")


def _sasl_user(settings: Settings) -> str | None:
    return settings.kafka_sasl_username if settings.kafka_security_protocol.startswith("SASL") else None


def _auth_settings(text: str) -> str:
    return f"BACKBONE_KAFKA_SECURITY_PROTOCOL and BACKBONE_KAFKA_{'SSL' if 'SSL' in text else 'SASL'}_*"


def client_config(settings: Settings, log: FoldingLog | None = None, /, **overrides: Any) -> dict[str, Any]:
    """`settings.kafka_config(**overrides)` with a FoldingLog (a new one unless given) as
    `logger` and `error_cb`, unless `overrides` name their own."""
    return {**(log or FoldingLog()).callbacks(), **settings.kafka_config(**overrides)}


def admin_client(settings: Settings, log: FoldingLog | None = None) -> AdminClient:
    """An AdminClient with the project's settings; a configuration librdkafka refuses is a
    ConfigError."""
    try:
        return AdminClient(client_config(settings, log))
    except KafkaException as e:
        raise ConfigError(f"Kafka client configuration refused: {reason(e.args[0].str())}") from e


def check_reachable(settings: Settings, timeout_s: float | None = None) -> None:
    """Return once a broker answers a metadata request. Raise KafkaAuthError / KafkaUnavailable
    / KafkaError as soon as a failure retrying cannot cure is seen, and KafkaUnavailable after
    `timeout_s` (default `settings.kafka_connect_timeout_s`) without an answer."""
    timeout = settings.kafka_connect_timeout_s if timeout_s is None else timeout_s
    log = FoldingLog(level=logging.DEBUG)  # what it says that matters is in the error raised
    admin = admin_client(settings, log)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                admin.list_topics(timeout=max(min(_STEP_S, deadline - time.monotonic()), 0.01))
                return
            except KafkaException:
                pass  # "Broker transport failure" says nothing: the error_cb's errors say why
            admin.poll(0)  # serves error_cb and the log
            failure = log.verdict(settings)
            if failure is not None:
                raise failure
            if time.monotonic() >= deadline:
                raise log.unreachable(settings, timeout)
    finally:
        log.flush()


def check_access(settings: Settings, *, reads: Sequence[str] = (), writes: Sequence[str] = (),
                 group: str | None = None) -> None:
    """Raise KafkaAuthorizationError, naming the resource and the operation, when the broker's
    ACLs do not let us read `reads`, write `writes` or consume in `group`: without this a producer
    refused its first write fails inside librdkafka (idempotence needs a topic it may write) and
    a consumer retries for ever. A broker without an authorizer allows every operation. A topic
    that does not exist is left to the command, which says so in its own words."""
    wanted = {t: {AclOperation.READ} for t in reads}
    for topic in writes:
        wanted.setdefault(topic, set()).add(AclOperation.WRITE)
    if not wanted and group is None:
        return
    admin = admin_client(settings)
    timeout = settings.kafka_connect_timeout_s
    futures = admin.describe_topics(TopicCollection(list(wanted)), include_authorized_operations=True,
                                    request_timeout=timeout) if wanted else {}
    for topic, future in futures.items():
        allowed = _authorized(future, RdKafkaError.TOPIC_AUTHORIZATION_FAILED, f"describing topic {topic}")
        _refuse_missing(settings, f"topic {topic}", wanted[topic], allowed)
    if group is not None:
        future = admin.describe_consumer_groups([group], include_authorized_operations=True,
                                                request_timeout=timeout)[group]
        allowed = _authorized(future, RdKafkaError.GROUP_AUTHORIZATION_FAILED, f"describing group {group}")
        _refuse_missing(settings, f"group {group}", {AclOperation.READ}, allowed)


def _authorized(future: Any, refused_code: int, what: str) -> list[AclOperation] | None:
    """The operations a described resource allows us; None when unknown (no such topic)."""
    try:
        allowed: list[AclOperation] | None = future.result().authorized_operations
    except KafkaException as e:
        code = e.args[0].code() if e.args else None
        if code == refused_code:
            return []
        if code == RdKafkaError.UNKNOWN_TOPIC_OR_PART:
            return None
        raise translate(e, what) from e
    return allowed


def _refuse_missing(settings: Settings, resource: str, wanted: set[AclOperation],
                    allowed: list[AclOperation] | None) -> None:
    if allowed is None or AclOperation.ALL in allowed:
        return
    refused = sorted(wanted - set(allowed), key=lambda o: o.name)
    if refused:
        who, op = f"user {user}" if (user := _sasl_user(settings)) else "this client", refused[0].name
        raise KafkaAuthorizationError(f"Kafka refused {op} on {resource} to {who}: no ACL allows it "
                                      f"(ask the cluster's admin for ALLOW {op} on {resource})")
