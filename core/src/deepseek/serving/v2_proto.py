"""The Open Inference Protocol's gRPC messages (package ``inference``), built at import.

The server answers six RPCs of ``inference.GRPCInferenceService``: ``ServerLive``,
``ServerReady``, ``ModelReady``, ``ServerMetadata``, ``ModelMetadata`` and ``ModelInfer``.
Their messages are declared here as protobuf descriptors (field names, numbers and types are
the protocol's wire format) and turned into message classes by protobuf's own runtime, in a
descriptor pool of their own, so nothing is generated at build time and no client package is
needed to serve: the one that ships the protocol's generated stubs carries 35 MB of
benchmark binaries, more than the edge form can spare. ``tests/serving`` checks every
message field for field against those stubs and talks to the server with their client.

``MESSAGES`` maps each message name to its class; ``RPCS`` each served RPC to its request
and response class.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PACKAGE = "inference"
SERVICE = f"{PACKAGE}.GRPCInferenceService"

F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {"bool": F.TYPE_BOOL, "int32": F.TYPE_INT32, "int64": F.TYPE_INT64,
            "uint32": F.TYPE_UINT32, "uint64": F.TYPE_UINT64, "float": F.TYPE_FLOAT,
            "double": F.TYPE_DOUBLE, "string": F.TYPE_STRING, "bytes": F.TYPE_BYTES}

# (name, number, type, repeated, oneof index or None); a type not in _SCALARS is a message,
# "map:<value message>" a map<string, message>
_PARAMETER = [("bool_param", 1, "bool", False, 0), ("int64_param", 2, "int64", False, 0),
              ("string_param", 3, "string", False, 0), ("double_param", 4, "double", False, 0),
              ("uint64_param", 5, "uint64", False, 0)]
_CONTENTS = [("bool_contents", 1, "bool", True, None), ("int_contents", 2, "int32", True, None),
             ("int64_contents", 3, "int64", True, None),
             ("uint_contents", 4, "uint32", True, None),
             ("uint64_contents", 5, "uint64", True, None),
             ("fp32_contents", 6, "float", True, None),
             ("fp64_contents", 7, "double", True, None),
             ("bytes_contents", 8, "bytes", True, None)]
_TENSOR = [("name", 1, "string", False, None), ("datatype", 2, "string", False, None),
           ("shape", 3, "int64", True, None), ("parameters", 4, "map:InferParameter", False, None),
           ("contents", 5, "InferTensorContents", False, None)]
_NAME_VERSION = [("name", 1, "string", False, None), ("version", 2, "string", False, None)]

#: message -> (fields, nested messages as {name: fields}, oneof names)
_MESSAGES: dict[str, tuple[list, dict[str, list], list[str]]] = {
    "ServerLiveRequest": ([], {}, []),
    "ServerLiveResponse": ([("live", 1, "bool", False, None)], {}, []),
    "ServerReadyRequest": ([], {}, []),
    "ServerReadyResponse": ([("ready", 1, "bool", False, None)], {}, []),
    "ModelReadyRequest": (_NAME_VERSION, {}, []),
    "ModelReadyResponse": ([("ready", 1, "bool", False, None)], {}, []),
    "ServerMetadataRequest": ([], {}, []),
    "ServerMetadataResponse": (
        [("name", 1, "string", False, None), ("version", 2, "string", False, None),
         ("extensions", 3, "string", True, None)], {}, []),
    "ModelMetadataRequest": (_NAME_VERSION, {}, []),
    "ModelMetadataResponse": (
        [("name", 1, "string", False, None), ("versions", 2, "string", True, None),
         ("platform", 3, "string", False, None),
         ("inputs", 4, "ModelMetadataResponse.TensorMetadata", True, None),
         ("outputs", 5, "ModelMetadataResponse.TensorMetadata", True, None)],
        {"TensorMetadata": [("name", 1, "string", False, None),
                            ("datatype", 2, "string", False, None),
                            ("shape", 3, "int64", True, None)]}, []),
    "InferParameter": (_PARAMETER, {}, ["parameter_choice"]),
    "InferTensorContents": (_CONTENTS, {}, []),
    "ModelInferRequest": (
        [("model_name", 1, "string", False, None), ("model_version", 2, "string", False, None),
         ("id", 3, "string", False, None), ("parameters", 4, "map:InferParameter", False, None),
         ("inputs", 5, "ModelInferRequest.InferInputTensor", True, None),
         ("outputs", 6, "ModelInferRequest.InferRequestedOutputTensor", True, None),
         ("raw_input_contents", 7, "bytes", True, None)],
        {"InferInputTensor": _TENSOR,
         "InferRequestedOutputTensor": [("name", 1, "string", False, None),
                                        ("parameters", 2, "map:InferParameter", False, None)]},
        []),
    "ModelInferResponse": (
        [("model_name", 1, "string", False, None), ("model_version", 2, "string", False, None),
         ("id", 3, "string", False, None), ("parameters", 4, "map:InferParameter", False, None),
         ("outputs", 5, "ModelInferResponse.InferOutputTensor", True, None),
         ("raw_output_contents", 6, "bytes", True, None)],
        {"InferOutputTensor": _TENSOR[:4] + [("contents", 5, "InferTensorContents", False,
                                              None)]}, []),
}

#: served RPC -> (request message, response message)
_RPCS = {"ServerLive": ("ServerLiveRequest", "ServerLiveResponse"),
         "ServerReady": ("ServerReadyRequest", "ServerReadyResponse"),
         "ModelReady": ("ModelReadyRequest", "ModelReadyResponse"),
         "ServerMetadata": ("ServerMetadataRequest", "ServerMetadataResponse"),
         "ModelMetadata": ("ModelMetadataRequest", "ModelMetadataResponse"),
         "ModelInfer": ("ModelInferRequest", "ModelInferResponse")}


def _entry_name(field: str) -> str:
    return "".join(p.capitalize() for p in field.split("_")) + "Entry"


def _fill(msg: Any, fields: list, oneofs: list[str]) -> None:
    for name in oneofs:
        msg.oneof_decl.add(name=name)
    for name, number, kind, repeated, oneof in fields:
        f = msg.field.add(name=name, number=number, json_name=_json_name(name))
        f.label = F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL
        if kind.startswith("map:"):
            entry = msg.nested_type.add(name=_entry_name(name))
            entry.options.map_entry = True
            entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL,
                            json_name="key")
            entry.field.add(name="value", number=2, type=F.TYPE_MESSAGE,
                            type_name=f".{PACKAGE}.{kind[4:]}", label=F.LABEL_OPTIONAL,
                            json_name="value")
            f.label = F.LABEL_REPEATED
            f.type = F.TYPE_MESSAGE
            f.type_name = f".{PACKAGE}.{msg.name}.{entry.name}"  # nested: fixed by _file
        elif kind in _SCALARS:
            f.type = _SCALARS[kind]
        else:
            f.type = F.TYPE_MESSAGE
            f.type_name = f".{PACKAGE}.{kind}"
        if oneof is not None:
            f.oneof_index = oneof


def _json_name(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.capitalize() for p in rest)


def _file() -> descriptor_pb2.FileDescriptorProto:
    fdp = descriptor_pb2.FileDescriptorProto(name="deepseek/open_inference_v2.proto",
                                             package=PACKAGE, syntax="proto3")
    for name, (fields, nested, oneofs) in _MESSAGES.items():
        msg = fdp.message_type.add(name=name)
        for sub, sub_fields in nested.items():
            inner = msg.nested_type.add(name=sub)
            _fill(inner, sub_fields, [])
            for f in inner.field:  # map entries of a nested message live in it
                if f.type_name.startswith(f".{PACKAGE}.{sub}."):
                    f.type_name = f".{PACKAGE}.{name}.{f.type_name[len(PACKAGE) + 2:]}"
        _fill(msg, fields, oneofs)
    svc = fdp.service.add(name=SERVICE.rsplit(".", 1)[1])
    for rpc, (req, resp) in _RPCS.items():
        svc.method.add(name=rpc, input_type=f".{PACKAGE}.{req}",
                       output_type=f".{PACKAGE}.{resp}")
    return fdp


POOL = descriptor_pool.DescriptorPool()
POOL.AddSerializedFile(_file().SerializeToString())
FILE = POOL.FindFileByName("deepseek/open_inference_v2.proto")
MESSAGES: dict[str, Any] = {
    name: message_factory.GetMessageClass(FILE.message_types_by_name[name])
    for name in _MESSAGES}
RPCS: dict[str, tuple[Any, Any]] = {rpc: (MESSAGES[a], MESSAGES[b])
                                    for rpc, (a, b) in _RPCS.items()}
