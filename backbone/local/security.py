"""Secure mode of the local stack (`backbone local up --secure`): TLS, SCRAM users and Kafka ACLs.

Everything lives in `<state_dir>/security/` (mode 700), generated at the first secure start with
the `openssl` command line and kept afterwards:

- `ca.pem` / `ca.key`: a private CA; clients verify the broker and PostgreSQL against `ca.pem`
- `node.pem` / `node.key`: the certificate of Kafka and PostgreSQL (SAN 127.0.0.1, localhost;
  subject `CN=backbone-local-node`), used by the broker on its controller listener too
- `<principal>.password` (mode 600) for each of `PRINCIPALS`: the SCRAM-SHA-512 passwords

Kafka then listens with SASL_SSL (SCRAM-SHA-512) for clients and between brokers, and with SSL
plus client certificates on its controller listener; StandardAuthorizer refuses whatever no ACL
allows. `admin` (and the node's own certificate) are super users; `grant_acls` gives the others
what `PRINCIPAL_ROLES` says. PostgreSQL takes TLS connections only (`hostssl` in its pg_hba).

A state directory is secure or plain for good: its Kafka storage was formatted with (or without)
the SCRAM users, so `up --secure` refuses a directory that already holds a plain stack.
"""

from __future__ import annotations

import os
import secrets
import shlex
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from backbone.errors import ServiceError
from backbone.local import process
from backbone.settings import Settings, local_bootstrap, local_database_url

NODE_SUBJECT = "CN=backbone-local-node"
ADMIN = "admin"
#: who may do what (besides admin, who may do everything): topic roles are settings' topic names
PRINCIPAL_ROLES: dict[str, dict[str, tuple[str, ...]]] = {
    # the projector reads both sources, relays dead letters (it reads the topic to find what a crashed
    # relay already produced) and publishes alerts
    "projector": {"read": ("orders", "marketdata", "deadletter"), "write": ("deadletter", "alerts")},
    # `simulate` and `publish` (which sends the lines it refuses to the dead-letter topic)
    "producer": {"read": (), "write": ("orders", "marketdata", "deadletter")},
    # `state`, `replay`: read, never write
    "reader": {"read": ("orders", "marketdata", "deadletter", "alerts"), "write": ()},
}
PRINCIPALS = (ADMIN, *PRINCIPAL_ROLES)
#: consumer groups: the projector's (`backbone-<projection>-…`) and the throwaway ones of ranged reads
GROUP_PREFIX = "backbone-"
READER_GROUP_PREFIXES = ("backbone-replay-", "backbone-scan-")
SCRAM = "SCRAM-SHA-512"


@dataclass(frozen=True)
class SecurityPaths:
    root: Path

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def node_cert(self) -> Path:
        return self.root / "node.pem"

    @property
    def node_key(self) -> Path:
        return self.root / "node.key"

    @property
    def keystore(self) -> Path:
        """The broker's PEM key store: the node's private key, then its certificate."""
        return self.root / "node-keystore.pem"

    def password_file(self, principal: str) -> Path:
        return self.root / f"{principal}.password"

    @classmethod
    def of(cls, settings: Settings) -> SecurityPaths:
        return cls(settings.state_dir / "security")


def enabled(settings: Settings) -> bool:
    """Whether this state directory holds a secure stack (created by `up --secure`)."""
    return SecurityPaths.of(settings).keystore.exists()


def password(settings: Settings, principal: str) -> str:
    return SecurityPaths.of(settings).password_file(principal).read_text().strip()


def ensure(settings: Settings, *, plain_stack_exists: bool) -> SecurityPaths:
    """Create the CA, the node certificate and the passwords unless they exist (idempotent)."""
    paths = SecurityPaths.of(settings)
    if enabled(settings):
        return paths
    if plain_stack_exists:
        raise ServiceError(f"{settings.state_dir} holds a stack started without --secure; secure mode needs a "
                           "fresh state directory (set BACKBONE_STATE_DIR) or `local down` and removing this one")
    openssl = process.require_tool("openssl", "install OpenSSL (Debian: apt-get install openssl)")
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.root.chmod(0o700)
    for principal in PRINCIPALS:
        _write_private(paths.password_file(principal), secrets.token_urlsafe(24))
    _openssl(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
             "-keyout", str(paths.ca_key), "-out", str(paths.ca_cert), "-subj", "/CN=trading-backbone local CA",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    # PKCS#8 without a passphrase: the form Kafka's PEM key store and PostgreSQL both read
    _openssl(openssl, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(paths.node_key))
    with tempfile.TemporaryDirectory() as tmp:
        csr, ext = Path(tmp) / "node.csr", Path(tmp) / "node.ext"
        ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                       "extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n")
        _openssl(openssl, "req", "-new", "-key", str(paths.node_key), "-subj", "/" + NODE_SUBJECT, "-out", str(csr))
        _openssl(openssl, "x509", "-req", "-in", str(csr), "-CA", str(paths.ca_cert), "-CAkey", str(paths.ca_key),
                 "-set_serial", str(secrets.randbits(63)), "-days", "825", "-extfile", str(ext),
                 "-out", str(paths.node_cert))
    for key in (paths.ca_key, paths.node_key):
        key.chmod(0o600)
    # written last: its presence is what `enabled` looks at
    _write_private(paths.keystore, paths.node_key.read_text() + paths.node_cert.read_text())
    return paths


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _openssl(openssl: str, *args: str) -> None:
    result = subprocess.run([openssl, *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ServiceError(f"openssl {args[0]} failed: {(result.stderr or result.stdout).strip()}")


# --- Kafka ---------------------------------------------------------------------------------------

def kafka_properties(settings: Settings, properties: str) -> str:
    """`properties` (a plain broker's server.properties) turned secure: its PLAINTEXT listeners
    become SASL_SSL, the controller listener SSL with client certificates, and the authorizer on."""
    paths = SecurityPaths.of(settings)
    admin_password = password(settings, ADMIN)
    lines = []
    for line in properties.splitlines():
        key, _, value = line.partition("=")
        if key in ("listeners", "advertised.listeners"):
            line = f"{key}={value.replace('PLAINTEXT://', 'SASL_SSL://')}"
        elif key == "inter.broker.listener.name":
            line = f"{key}=SASL_SSL"
        elif key == "listener.security.protocol.map":
            line = f"{key}=CONTROLLER:SSL,SASL_SSL:SASL_SSL"
        lines.append(line)
    jaas = (f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{ADMIN}" '
            f'password="{admin_password}";')
    lines += [
        f"sasl.enabled.mechanisms={SCRAM}",
        f"sasl.mechanism.inter.broker.protocol={SCRAM}",
        f"listener.name.sasl_ssl.{SCRAM.lower()}.sasl.jaas.config={jaas}",
        "ssl.keystore.type=PEM",
        f"ssl.keystore.location={paths.keystore}",
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={paths.ca_cert}",
        "listener.name.controller.ssl.client.auth=required",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        f"super.users=User:{ADMIN};User:{NODE_SUBJECT}",
        "allow.everyone.if.no.acl.found=false",
        "",
    ]
    return "\n".join(lines)


def format_arguments(settings: Settings) -> list[str]:
    """StorageTool arguments that create the SCRAM users along with the storage: the broker needs
    admin's credentials before it can answer anyone, so they cannot wait for the admin API.
    They hold passwords: pass them through `argument_file`."""
    args: list[str] = []
    for principal in PRINCIPALS:
        args += ["--add-scram", f"{SCRAM}=[name={principal},password={password(settings, principal)}]"]
    return args


@contextmanager
def argument_file(args: list[str]) -> Iterator[list[str]]:
    """A java main class and its arguments as a java argument file (mode 600, removed afterwards):
    what goes in it never appears in a command line. The launcher expands `@file` only before
    the main class, so the class goes in too."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "java.args"
        _write_private(path, "".join('"' + a.replace("\\", "\\\\").replace('"', '\\"') + '"\n' for a in args))
        yield [f"@{path}"]


def client_config(settings: Settings, principal: str) -> dict[str, Any]:
    """librdkafka settings of `principal` against the local secure broker."""
    return {"security.protocol": "SASL_SSL", "sasl.mechanism": SCRAM, "sasl.username": principal,
            "sasl.password": password(settings, principal),
            "ssl.ca.location": str(SecurityPaths.of(settings).ca_cert)}


def acl_bindings(settings: Settings) -> list[AclBinding]:
    """The ACLs of `PRINCIPAL_ROLES` for the topics named by `settings`."""
    topic_of = {"orders": settings.topic_orders, "marketdata": settings.topic_marketdata,
                "deadletter": settings.topic_deadletter, "alerts": settings.topic_alerts}

    def allow(principal: str, rtype: ResourceType, name: str, op: AclOperation,
              pattern: ResourcePatternType = ResourcePatternType.LITERAL) -> AclBinding:
        return AclBinding(rtype, name, pattern, f"User:{principal}", "*", op, AclPermissionType.ALLOW)

    out = []
    for principal, role in PRINCIPAL_ROLES.items():
        out += [allow(principal, ResourceType.TOPIC, topic_of[t], AclOperation.READ) for t in role["read"]]
        out += [allow(principal, ResourceType.TOPIC, topic_of[t], AclOperation.WRITE) for t in role["write"]]
        out += [allow(principal, ResourceType.TOPIC, topic_of[t], AclOperation.DESCRIBE)
                for t in dict.fromkeys(role["read"] + role["write"])]
    out.append(allow("projector", ResourceType.GROUP, GROUP_PREFIX, AclOperation.READ, ResourcePatternType.PREFIXED))
    out += [allow("reader", ResourceType.GROUP, prefix, AclOperation.READ, ResourcePatternType.PREFIXED)
            for prefix in READER_GROUP_PREFIXES]
    return out


def grant_acls(settings: Settings) -> int:
    """Create the ACLs for the topics `settings` names (idempotent: Kafka keeps one of each)."""
    conf = {"bootstrap.servers": local_bootstrap(settings.kafka_port), **client_config(settings, ADMIN)}
    bindings = acl_bindings(settings)
    admin = AdminClient(conf)  # kept referenced: the futures fail once the client is collected
    try:
        for future in admin.create_acls(bindings, request_timeout=30).values():
            future.result()
    except KafkaException as e:
        raise ServiceError(f"creating the Kafka ACLs failed: {e.args[0].str() if e.args else e}") from e
    return len(bindings)


def export_lines(settings: Settings, principal: str = ADMIN) -> list[str]:
    """Shell `export` lines that point the CLI at the local stack, as `principal` when it is
    secure. A password is read from its file when the line is evaluated, so it is never printed."""
    bootstrap, url = local_bootstrap(settings.kafka_port), local_database_url(settings.postgres_port)
    if not enabled(settings):
        return [f"export BACKBONE_KAFKA_BOOTSTRAP_SERVERS={bootstrap}", f"export BACKBONE_DATABASE_URL={url}"]
    if principal not in PRINCIPALS:
        raise ServiceError(f"unknown principal {principal!r}; choose one of {', '.join(PRINCIPALS)}")
    paths = SecurityPaths.of(settings)
    tls = "&".join(f"{k}={v}" for k, v in postgres_client_parameters(settings).items())
    return [
        f"export BACKBONE_KAFKA_BOOTSTRAP_SERVERS={bootstrap}",
        "export BACKBONE_KAFKA_SECURITY_PROTOCOL=SASL_SSL",
        f"export BACKBONE_KAFKA_SASL_MECHANISM={SCRAM}",
        f"export BACKBONE_KAFKA_SASL_USERNAME={principal}",
        f'export BACKBONE_KAFKA_SASL_PASSWORD="$(cat {shlex.quote(str(paths.password_file(principal)))})"',
        f"export BACKBONE_KAFKA_SSL_CA_LOCATION={shlex.quote(str(paths.ca_cert))}",
        f"export BACKBONE_DATABASE_URL={shlex.quote(url + '?' + tls)}",
    ]


# --- PostgreSQL ------------------------------------------------------------------------------------

def postgres_server_options(settings: Settings, pg_root: Path, chown: Any) -> str:
    """`postgres -c` options for TLS only: the node's key and certificate copied where the
    server's user can read them (it refuses a key others may read), and a pg_hba that takes
    TCP connections over TLS only."""
    paths = SecurityPaths.of(settings)
    cert, key, hba = pg_root / "server.pem", pg_root / "server.key", pg_root / "pg_hba_tls.conf"
    cert.write_text(paths.node_cert.read_text())
    _write_private(key, paths.node_key.read_text())
    hba.write_text("# TLS only: a plain TCP connection matches no line and is refused\n"
                   "hostssl all all 127.0.0.1/32 scram-sha-256\n")
    for path in (cert, key, hba):
        chown(path)
    return f"-c ssl=on -c ssl_cert_file={cert} -c ssl_key_file={key} -c hba_file={hba}"


def postgres_client_parameters(settings: Settings) -> dict[str, str]:
    """libpq parameters that verify the local server against the CA."""
    return {"sslmode": "verify-full", "sslrootcert": str(SecurityPaths.of(settings).ca_cert)}
