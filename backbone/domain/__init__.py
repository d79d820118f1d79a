"""The business rules: order state machine, reported fields, position netting (pure Python,
compiled from this same source where built; see backbone.compiled)."""

import backbone.compiled  # noqa: F401 - first: honours BACKBONE_INTERPRETED before a rule module loads
