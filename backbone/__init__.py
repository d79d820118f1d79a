"""trading-backbone: shared core (settings, errors, domain model, codec, Kafka and DB plumbing)."""
