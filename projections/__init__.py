"""Projections: pure state transitions (state.py) and the Postgres writer/loader (store.py)."""
