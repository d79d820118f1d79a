"""Consumers: the supervised batch loop with offsets stored in Postgres, DLQ, rebalances."""
