"""The independent side of tests/protojson.rs: Python's protobuf package.

Reads the FileDescriptorSet gonet-build wrote (argv[1]) and a JSON list of requests on
stdin, each {"type": full name, "json": text} or {"type": full name, "binary": hex}.
A JSON request is parsed strictly (unknown fields are errors) and answered with the
message's binary encoding; a binary one is answered with json_format's JSON.
"""

import json
import sys

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

# The well-known types, in the default pool with their JSON forms.
from google.protobuf import (  # noqa: F401
    any_pb2,
    api_pb2,
    duration_pb2,
    empty_pb2,
    field_mask_pb2,
    source_context_pb2,
    struct_pb2,
    timestamp_pb2,
    type_pb2,
    wrappers_pb2,
)

with open(sys.argv[1], "rb") as f:
    files = descriptor_pb2.FileDescriptorSet.FromString(f.read())
pool = descriptor_pool.Default()
for file in files.file:
    if not file.name.startswith("google/protobuf/"):
        pool.AddSerializedFile(file.SerializeToString())

answers = []
for request in json.load(sys.stdin):
    cls = message_factory.GetMessageClass(pool.FindMessageTypeByName(request["type"]))
    if "json" in request:
        msg = json_format.Parse(request["json"], cls())
        answers.append({"binary": msg.SerializeToString(deterministic=True).hex()})
    else:
        msg = cls.FromString(bytes.fromhex(request["binary"]))
        answers.append({"json": json_format.MessageToJson(msg, indent=None)})
json.dump(answers, sys.stdout)
