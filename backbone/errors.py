"""Root of the project's exception hierarchy.

    BackboneError
    ├── ConfigError              settings that cannot work (bad value, missing file)
    │   └── UsageError           a command's arguments that cannot work (a time without offset)
    ├── ServiceError             local stack: Java/Maven missing, port busy, start failed
    ├── KafkaError               a librdkafka error, translated at the boundary
    │   ├── DeliveryError        a produced record was not acknowledged
    │   ├── KafkaUnavailable     no broker answers: unknown host, refused, nothing within the timeout
    │   └── KafkaAuthError       the broker refused us: SASL credentials, TLS handshake
    │       └── KafkaAuthorizationError  no ACL allows an operation we need on a topic
    ├── DatabaseError            a PostgreSQL failure, translated at the boundary
    │   ├── DatabaseUnavailable  the server cannot be reached: unknown host, refused, timeout
    │   └── DatabaseAuthError    the server refused the credentials
    ├── TopicConfigError         an existing topic differs from the configured one
    ├── DecodeError              bytes that are not a record we know (see backbone.codec)
    ├── SchemaCompatibilityError a schema version breaks readers of older data
    ├── InvalidRecord            a record refused for its content (reason = short stable id)
    │   └── InvalidOrderTransition   an event the order state machine refuses (backbone.domain)
    └── InvariantViolation       a bug: an internal invariant does not hold

Every message about a record names it as ``topic[partition]@offset`` where known. The CLI
maps the classes to exit codes (cli/common.py): ConfigError (UsageError with it) 2, the two
*Unavailable 3, the two *AuthError 4, every other error 1.
"""

from __future__ import annotations


class BackboneError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(BackboneError):
    pass


class UsageError(ConfigError):
    """Arguments a command cannot use; the exit code of bad configuration (README: 2)."""


class ServiceError(BackboneError):
    pass


class KafkaError(BackboneError):
    def __init__(self, message: str, *, code: int | None = None, retriable: bool = False):
        super().__init__(message)
        self.code = code
        self.retriable = retriable


class DeliveryError(KafkaError):
    pass


class KafkaUnavailable(KafkaError):
    pass


class KafkaAuthError(KafkaError):
    pass


class KafkaAuthorizationError(KafkaAuthError):
    pass


class DatabaseError(BackboneError):
    pass


class DatabaseUnavailable(DatabaseError):
    pass


class DatabaseAuthError(DatabaseError):
    pass


class TopicConfigError(BackboneError):
    pass


class DecodeError(BackboneError):
    pass


class SchemaCompatibilityError(BackboneError):
    pass


class InvalidRecord(BackboneError):
    """A record refused for its content; `reason` is a short stable id for counting/alerting."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class InvalidOrderTransition(InvalidRecord):
    """An event the order state machine refuses; `rule` names the rule broken."""

    def __init__(self, order_id: str, rule: str, detail: str):
        super().__init__(rule, f"order {order_id}: {rule}: {detail}")
        self.order_id = order_id
        self.rule = rule
        self.detail = detail


class InvariantViolation(BackboneError):
    pass


def coordinates(topic: str, partition: int, offset: int) -> str:
    """The canonical way to name a record in messages: ``topic[partition]@offset``."""
    return f"{topic}[{partition}]@{offset}"
