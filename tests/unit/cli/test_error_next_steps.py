"""The errors users meet most name what to do next, in their one line: a database or broker
that cannot be reached, refused credentials, a TLS handshake that failed."""

from __future__ import annotations

import psycopg
import pytest
import typer

from backbone import db
from cli.common import user_errors

REFUSED = ('connection failed: connection to server at "127.0.0.1", port 1 failed: Connection refused\n'
           "\tIs the server running on that host and accepting TCP/IP connections?")


@pytest.mark.parametrize(("driver_message", "next_step"), [
    (REFUSED, "start the local stack with `backbone local up`, or check BACKBONE_DATABASE_URL"),
    ('connection failed: FATAL:  password authentication failed for user "app"',
     "check the user and password in BACKBONE_DATABASE_URL"),
    ('connection failed: FATAL:  no pg_hba.conf entry for host "127.0.0.1", user "app", database "b", no encryption',
     "add sslmode=require or verify-full to BACKBONE_DATABASE_URL"),
    ('connection failed: connection to server at "10.0.0.1", port 5432 failed: SSL error: certificate verify failed',
     "check sslmode and sslrootcert in BACKBONE_DATABASE_URL"),
    ('connection failed: FATAL:  database "nope" does not exist', "check BACKBONE_DATABASE_URL"),
])
def test_a_database_failure_names_the_next_step(driver_message: str, next_step: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit), user_errors():
        raise psycopg.OperationalError(driver_message)
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and next_step in err, err
    assert next_step in str(db.connection_error(psycopg.OperationalError(driver_message)))
