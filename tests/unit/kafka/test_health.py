"""backbone.kafka.health without a broker: librdkafka's errors (real KafkaError objects, with the
codes and texts librdkafka 2.x reports) classified, and repeated lines folded."""

from __future__ import annotations

import logging

import pytest
from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import KafkaException

from backbone.errors import KafkaAuthError, KafkaError, KafkaUnavailable
from backbone.kafka.health import FoldingLog, bootstrap_addresses, classify, client_config, reason, translate
from backbone.settings import Settings

# Texts as librdkafka reports them (seen against the local broker, a closed port and an
# unresolvable name; the SASL one is a SASL_PLAINTEXT client at a PLAINTEXT listener).
REFUSED = "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused (after 0ms in state CONNECT)"
UNRESOLVED = ("no-such-host.invalid:9092/bootstrap: Failed to resolve 'no-such-host.invalid:9092': Name or service "
              "not known (after 1ms in state CONNECT)")
SASL_REFUSED = ("sasl_plaintext://127.0.0.1:19092/bootstrap: SASL PLAIN mechanism handshake failed: Broker: Request "
                "not valid in current SASL state: broker's supported mechanisms:  (after 0ms in state AUTH_HANDSHAKE)")
BAD_PASSWORD = ("b1:9093/bootstrap: SASL authentication error: Authentication failed: Invalid username or password "
                "(after 5ms in state AUTH_REQ)")
TLS_REFUSED = ("ssl://127.0.0.1:19092/bootstrap: SSL handshake failed: Disconnected: SSL connection closed by peer: "
               "connecting to a PLAINTEXT broker listener? (after 1ms in state SSL_HANDSHAKE)")


def err(code: int, text: str, **flags: bool) -> RdKafkaError:
    return RdKafkaError(code, text, **flags)


@pytest.mark.parametrize(("error", "kind"), [
    (err(RdKafkaError._AUTHENTICATION, SASL_REFUSED), "auth"),
    (err(RdKafkaError._AUTHENTICATION, BAD_PASSWORD), "auth"),
    (err(RdKafkaError._TRANSPORT, TLS_REFUSED), "auth"),
    (err(RdKafkaError._RESOLVE, UNRESOLVED), "resolve"),
    (err(RdKafkaError._TRANSPORT, REFUSED), "transport"),
    (err(RdKafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"), "transport"),
    (err(RdKafkaError._TIMED_OUT, "Failed to get metadata: Local: Timed out"), "transport"),
    (err(RdKafkaError._FENCED, "producer fenced", fatal=True), "fatal"),
    (err(RdKafkaError._MSG_TIMED_OUT, "Local: Message timed out"), None),
    (err(RdKafkaError.NOT_LEADER_FOR_PARTITION, "Broker: Not leader for partition"), None),
])
def test_classify(error: RdKafkaError, kind: str | None) -> None:
    assert classify(error) == kind


def test_reason_drops_what_changes_between_repeats() -> None:
    assert reason(REFUSED) == "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused"
    assert reason("[thrd:b1:9092/bootstrap]: b1:9092/bootstrap: Connect to ipv4#10.0.0.1:9092 failed: Connection "
                  "refused (after 3ms in state CONNECT, 30 identical error(s) suppressed)") == \
        "b1:9092/bootstrap: Connect to ipv4#10.0.0.1:9092 failed: Connection refused"


def test_bootstrap_addresses_as_librdkafka_names_them() -> None:
    assert bootstrap_addresses("a:1, SASL_SSL://b:2,c") == {"a:1", "b:2", "c:9092"}


def test_translate_gives_the_project_error_of_each_kind() -> None:
    assert isinstance(translate(KafkaException(err(RdKafkaError._AUTHENTICATION, BAD_PASSWORD)), "x"),
                      KafkaAuthError)
    unavailable = translate(err(RdKafkaError._TRANSPORT, REFUSED), "reading the cluster's topics")
    assert isinstance(unavailable, KafkaUnavailable)
    assert str(unavailable) == ("reading the cluster's topics: 127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 "
                                "failed: Connection refused")
    other = translate(err(RdKafkaError.TOPIC_ALREADY_EXISTS, "Topic 't' already exists."), "creating topic t")
    assert type(other) is KafkaError and other.code == RdKafkaError.TOPIC_ALREADY_EXISTS


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def said() -> list[tuple[int, str]]:
    return []


@pytest.fixture
def logger(said: list[tuple[int, str]]) -> logging.Logger:
    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            said.append((record.levelno, record.getMessage()))

    logger = logging.getLogger(f"test.health.{id(said)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(Keep())
    return logger


def test_a_repeated_line_is_said_once_then_with_its_count(logger: logging.Logger,
                                                          said: list[tuple[int, str]]) -> None:
    clock = Clock()
    log = FoldingLog(logger, every_s=60, clock=clock)
    line = reason(REFUSED)
    for i in range(700):  # librdkafka's cadence against a closed port: ten a second
        clock.now = i / 10
        log.error(err(RdKafkaError._TRANSPORT, REFUSED.replace("0ms", f"{i % 3}ms")))
    # said when first seen, then with the count once a minute
    assert said == [(logging.ERROR, line), (logging.ERROR, f"{line} (600 more times)")]
    said.clear()
    log.flush()  # the client is done: what was counted since is said
    assert said == [(logging.ERROR, f"{line} (99 more times)")]
    said.clear()
    log.flush()
    assert said == []


def test_log_lines_fold_like_errors_and_connection_failures_are_not_said_twice(
        logger: logging.Logger, said: list[tuple[int, str]]) -> None:
    log = FoldingLog(logger)
    for _ in range(3):
        # confluent-kafka's call for a log line; FAIL lines come with the same text by error_cb
        log.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#producer-1", "[thrd:x]: " + REFUSED)
        log.log(logging.WARNING, "%s [%s] %s", "CONFWARN", "rdkafka#producer-1", "[thrd:app]: ignored property")
    log.flush()
    assert said == [(logging.WARNING, "ignored property"), (logging.WARNING, "ignored property (2 more times)")]


def test_a_probe_log_says_everything_at_its_own_level(logger: logging.Logger, said: list[tuple[int, str]]) -> None:
    log = FoldingLog(logger, level=logging.DEBUG)
    log.error(err(RdKafkaError._TRANSPORT, REFUSED))
    log.error(err(RdKafkaError._TRANSPORT, REFUSED))
    log.flush()
    assert [level for level, _ in said] == [logging.DEBUG, logging.DEBUG]


def settings(bootstrap: str) -> Settings:
    return Settings(_env_file=None, kafka_bootstrap_servers=bootstrap)


def test_an_authentication_failure_is_final_at_once() -> None:
    log = FoldingLog()
    log.error(err(RdKafkaError._AUTHENTICATION, BAD_PASSWORD))
    verdict = log.verdict(settings("b1:9093"))
    assert isinstance(verdict, KafkaAuthError)
    assert str(verdict) == ("Kafka at b1:9093 refused the connection: SASL authentication error: Authentication "
                            "failed: Invalid username or password (check BACKBONE_KAFKA_SECURITY_PROTOCOL and "
                            "BACKBONE_KAFKA_SASL_*)")


def test_an_unknown_host_is_final_only_when_every_bootstrap_address_is_unknown() -> None:
    log = FoldingLog()
    log.error(err(RdKafkaError._RESOLVE, UNRESOLVED))
    assert log.verdict(settings("no-such-host.invalid:9092,127.0.0.1:19092")) is None
    verdict = log.verdict(settings("no-such-host.invalid:9092"))
    assert isinstance(verdict, KafkaUnavailable) and "unknown Kafka broker host" in str(verdict)


def test_a_resolver_that_did_not_answer_is_not_final() -> None:
    log = FoldingLog()
    log.error(err(RdKafkaError._RESOLVE, "h:9092/bootstrap: Failed to resolve 'h:9092': Temporary failure in name "
                                         "resolution (after 5003ms in state CONNECT)"))
    assert log.verdict(settings("h:9092")) is None
    assert "Temporary failure in name resolution" in str(log.unreachable(settings("h:9092"), 10))


def test_a_refused_connection_is_final_only_after_the_timeout() -> None:
    log = FoldingLog()
    log.error(err(RdKafkaError._TRANSPORT, REFUSED))
    log.error(err(RdKafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
    assert log.verdict(settings("127.0.0.1:1")) is None
    assert str(log.unreachable(settings("127.0.0.1:1"), 10)) == (
        "no Kafka broker reachable at 127.0.0.1:1 within 10 s: Connect to ipv4#127.0.0.1:1 failed: Connection "
        "refused (start the local stack with `backbone local up`, or check BACKBONE_KAFKA_BOOTSTRAP_SERVERS; "
        "the wait is BACKBONE_KAFKA_CONNECT_TIMEOUT_S)")


def test_every_client_config_routes_its_log_and_errors_unless_told_otherwise() -> None:
    conf = client_config(Settings(_env_file=None))
    assert isinstance(conf["logger"], FoldingLog) and conf["error_cb"] == conf["logger"].error
    mine = FoldingLog()
    assert client_config(Settings(_env_file=None), mine)["logger"] is mine
    assert client_config(Settings(_env_file=None), logger=None)["logger"] is None


def test_the_connect_timeout_bounds_each_connection_attempt() -> None:
    conf = Settings(_env_file=None, kafka_connect_timeout_s=2.5).kafka_config()
    assert conf["socket.connection.setup.timeout.ms"] == 2500
