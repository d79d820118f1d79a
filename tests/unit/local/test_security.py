"""Secure mode's pure parts: the broker's properties, the ACLs, the exports, the argument file.
The stack itself runs in tests/integration/test_secure_stack.py."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from confluent_kafka.admin import AclOperation, ResourceType

from backbone.errors import ServiceError
from backbone.local import kafka, security
from backbone.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A state directory whose security files exist (their contents do not matter here)."""
    paths = security.SecurityPaths.of(Settings().with_overrides(state_dir=tmp_path))
    paths.root.mkdir()
    for principal in security.PRINCIPALS:
        paths.password_file(principal).write_text(f"pw-of-{principal}\n")
    paths.keystore.write_text("key and certificate")
    return Settings().with_overrides(state_dir=tmp_path, kafka_port=29092, kafka_controller_port=29093)


def _properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_the_broker_listens_with_sasl_ssl_and_authorizes(settings: Settings) -> None:
    plain = kafka.server_properties(settings, kafka.KafkaPaths.of(settings))
    props = _properties(security.kafka_properties(settings, plain))
    assert props["listeners"] == "SASL_SSL://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    assert props["advertised.listeners"] == "SASL_SSL://127.0.0.1:29092"
    assert props["listener.security.protocol.map"] == "CONTROLLER:SSL,SASL_SSL:SASL_SSL"
    assert props["inter.broker.listener.name"] == "SASL_SSL"
    assert props["listener.name.controller.ssl.client.auth"] == "required"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    assert props["super.users"] == f"User:admin;User:{security.NODE_SUBJECT}"
    assert 'username="admin" password="pw-of-admin"' in props["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"]
    assert "PLAINTEXT" not in "".join(v for k, v in props.items() if "listener" in k)


def test_each_principal_gets_only_its_operations(settings: Settings) -> None:
    named = settings.with_overrides(topic_orders="o", topic_marketdata="m", topic_deadletter="d", topic_alerts="a")
    granted: dict[str, set[tuple[str, str, str]]] = {}
    for b in security.acl_bindings(named):
        granted.setdefault(b.principal, set()).add((b.restype.name, b.name, b.operation.name))
    topic_ops = {p: {(n, op) for kind, n, op in ops if kind == "TOPIC"} for p, ops in granted.items()}
    assert {op for _, op in topic_ops["User:reader"]} == {"READ", "DESCRIBE"}
    assert {n for n, _ in topic_ops["User:reader"]} == {"o", "m", "d", "a"}
    assert {(n, op) for n, op in topic_ops["User:producer"] if op == "WRITE"} == {("o", "WRITE"), ("m", "WRITE"),
                                                                                  ("d", "WRITE")}
    assert not any(op == "READ" for _, op in topic_ops["User:producer"])
    assert {n for n, op in topic_ops["User:projector"] if op == "WRITE"} == {"d", "a"}
    assert {n for n, op in topic_ops["User:projector"] if op == "READ"} == {"o", "m", "d"}
    assert "User:admin" not in granted  # a super user: no ACL needed
    groups = {(b.principal, b.name) for b in security.acl_bindings(named) if b.restype == ResourceType.GROUP}
    assert groups == {("User:projector", "backbone-"), ("User:reader", "backbone-replay-"),
                      ("User:reader", "backbone-scan-")}
    assert all(b.operation == AclOperation.READ for b in security.acl_bindings(named)
               if b.restype == ResourceType.GROUP)


def test_the_exports_name_the_password_file_never_the_password(settings: Settings) -> None:
    lines = security.export_lines(settings, "projector")
    assert not any("pw-of" in line for line in lines)
    assert "export BACKBONE_KAFKA_SASL_USERNAME=projector" in lines
    url = next(line for line in lines if line.startswith("export BACKBONE_DATABASE_URL="))
    assert "sslmode=verify-full" in url and "sslrootcert=" in url
    with pytest.raises(ServiceError, match="unknown principal 'root'"):
        security.export_lines(settings, "root")


def test_a_plain_stack_exports_its_addresses_only(tmp_path: Path) -> None:
    plain = Settings().with_overrides(state_dir=tmp_path, kafka_port=29092, postgres_port=25432)
    assert security.export_lines(plain) == [
        "export BACKBONE_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:29092",
        "export BACKBONE_DATABASE_URL=postgresql+psycopg://backbone:backbone@127.0.0.1:25432/backbone"]


def test_a_state_directory_with_a_plain_stack_is_not_made_secure(tmp_path: Path) -> None:
    with pytest.raises(ServiceError, match="started without --secure"):
        security.ensure(Settings().with_overrides(state_dir=tmp_path), plain_stack_exists=True)


def test_the_argument_file_holds_the_arguments_quoted_and_disappears() -> None:
    args = ["kafka.tools.StorageTool", "--add-scram", 'SCRAM-SHA-512=[name=a,password=x"y\\z w]']
    with security.argument_file(args) as argv:
        assert len(argv) == 1 and argv[0].startswith("@")
        path = Path(argv[0][1:])
        assert path.stat().st_mode & 0o077 == 0
        # the java launcher's rules for a quoted argument are the shell's double quotes for these
        assert shlex.split(path.read_text().replace("\n", " ")) == args
    assert not path.exists()
