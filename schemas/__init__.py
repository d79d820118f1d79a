"""Versioned Avro schemas, shipped as package data.

Layout: ``<record_dir>/v<N>.avsc`` (``order_event/v1.avsc``, ``order_event/v2.avsc``, ...).
A published version is never edited or deleted: a change is a new ``v<N+1>.avsc`` that must
stay BACKWARD compatible with every earlier version (``backbone schemas check``), because
consumers decode every version ever published (see ``backbone.codec.avro``).
"""

from pathlib import Path

#: Directory holding one sub-directory of ``v<N>.avsc`` files per record type.
SCHEMAS_DIR = Path(__file__).parent
