"""Producers: validate → Avro encode → idempotent produce, keyed by symbol."""
