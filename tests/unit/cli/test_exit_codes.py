"""Each kind of failure ends a command with its documented exit code (README, "Exit codes")."""

from __future__ import annotations

import psycopg
import pytest
import typer
from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import KafkaException

from backbone.errors import (
    BackboneError,
    ConfigError,
    DatabaseAuthError,
    DatabaseError,
    DatabaseUnavailable,
    KafkaAuthError,
    KafkaError,
    KafkaUnavailable,
)
from cli.common import user_errors


@pytest.mark.parametrize(("error", "code"), [
    (BackboneError("x"), 1), (KafkaError("x"), 1), (DatabaseError("x"), 1),
    (ConfigError("x"), 2),
    (KafkaUnavailable("x"), 3), (DatabaseUnavailable("x"), 3),
    (KafkaAuthError("x"), 4), (DatabaseAuthError("x"), 4),
    # driver errors that escaped their translation
    (KafkaException(RdKafkaError(RdKafkaError._TRANSPORT, "b:9092/bootstrap: Connect to ipv4#10.0.0.1:9092 failed: "
                                                        "Connection refused")), 3),
    (KafkaException(RdKafkaError(RdKafkaError._AUTHENTICATION, "SASL authentication error")), 4),
    (psycopg.OperationalError('connection failed: connection to server at "10.0.0.1", port 5432 failed: '
                              "Connection refused\n\tIs the server running on that host?"), 3),
    (psycopg.OperationalError('connection failed: FATAL:  password authentication failed for user "app"'), 4),
    # a TLS handshake that failed: a server certificate the CA did not sign, a server without TLS
    (psycopg.OperationalError('connection failed: connection to server at "10.0.0.1", port 5432 failed: '
                              "SSL error: certificate verify failed"), 4),
    (psycopg.OperationalError('connection failed: connection to server at "10.0.0.1", port 5432 failed: '
                              "server does not support SSL, but SSL was required"), 4),
    # a Kafka ACL refused an operation
    (KafkaException(RdKafkaError(RdKafkaError.TOPIC_AUTHORIZATION_FAILED, "Authorization failed.")), 4),
])
def test_user_errors_exit_code(error: Exception, code: int, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as ended, user_errors():
        raise error
    assert ended.value.exit_code == code
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
