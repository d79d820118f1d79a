"""Thin, typed wrappers over confluent-kafka: admin (topics), producer and consumer plumbing."""
