"""Serialization of the event model.

* `backbone.codec.avro`: `AvroCodec`, the Kafka wire format (Avro single-object encoding,
  versioned schemas from ``schemas/``), `EncodeError`; its parts (`schemas`, `checks`,
  `fields`, `wire`, `generated`, `native`) are listed in its docstring.
* `backbone.codec.json_form`: the canonical JSON form (``backbone publish`` input, ``--json``
  output), `JsonFormError`.
* `backbone.codec.compatibility`: `check_schemas`, the schema-evolution check behind
  ``backbone schemas check`` (imports the Apache Avro library; import it only where needed).
"""

from backbone.codec.avro import AvroCodec, EncodeError
from backbone.codec.json_form import JsonFormError, dumps, from_json_dict, loads, to_json_dict

__all__ = ["AvroCodec", "EncodeError", "JsonFormError", "dumps", "from_json_dict", "loads", "to_json_dict"]
