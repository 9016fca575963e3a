"""The server's own Open Inference Protocol messages (deepseek.serving.v2_proto) equal the
protocol's generated stubs (tritonclient's) field for field, and the bytes cross both ways."""

from __future__ import annotations

import pytest

from deepseek.serving.v2_proto import MESSAGES, RPCS, SERVICE

stubs = pytest.importorskip("tritonclient.grpc.service_pb2")


def _repeated(f) -> bool:
    return f.is_repeated if hasattr(f, "is_repeated") else f.label == f.LABEL_REPEATED


def _differences(ours, theirs, path: str) -> list[str]:
    out = []
    mine = {f.name: f for f in ours.fields}
    other = {f.name: f for f in theirs.fields}
    out += [f"{path}.{n}: only in the stubs" for n in other if n not in mine]
    for n, f in mine.items():
        g = other.get(n)
        if g is None:
            out.append(f"{path}.{n}: not in the stubs")
            continue
        if (f.number, f.type, _repeated(f)) != (g.number, g.type, _repeated(g)):
            out.append(f"{path}.{n}: {(f.number, f.type)} != {(g.number, g.type)}")
        oneof = (f.containing_oneof.name if f.containing_oneof else None,
                 g.containing_oneof.name if g.containing_oneof else None)
        if oneof[0] != oneof[1]:
            out.append(f"{path}.{n}: oneof {oneof}")
        if f.message_type is not None:
            if f.message_type.full_name != g.message_type.full_name:
                out.append(f"{path}.{n}: {f.message_type.full_name} != "
                           f"{g.message_type.full_name}")
            out += _differences(f.message_type, g.message_type, f"{path}.{n}")
    return out


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_messages_equal_the_protocol_stubs(name):
    theirs = stubs.DESCRIPTOR.message_types_by_name[name]
    assert MESSAGES[name].DESCRIPTOR.full_name == theirs.full_name
    assert _differences(MESSAGES[name].DESCRIPTOR, theirs, name) == []


def test_rpcs_equal_the_protocol_service():
    svc = stubs.DESCRIPTOR.services_by_name[SERVICE.rsplit(".", 1)[1]]
    assert svc.full_name == SERVICE
    for rpc, (req, resp) in RPCS.items():
        m = svc.methods_by_name[rpc]
        assert (m.input_type.full_name, m.output_type.full_name) == (
            req.DESCRIPTOR.full_name, resp.DESCRIPTOR.full_name)


def test_bytes_cross_both_ways():
    theirs = stubs.ModelInferRequest(model_name="m", model_version="2", id="r1")
    t = theirs.inputs.add(name="x", datatype="FP32", shape=[2, 1])
    t.contents.fp32_contents.extend([1.5, -2.0])
    t.parameters["binary_data_size"].int64_param = 8
    theirs.parameters["priority"].uint64_param = 3
    theirs.outputs.add(name="y").parameters["classification"].int64_param = 2
    theirs.raw_input_contents.append(b"\x00\x01")
    ours = MESSAGES["ModelInferRequest"].FromString(theirs.SerializeToString())
    assert ours.model_name == "m" and ours.id == "r1"
    assert list(ours.inputs[0].shape) == [2, 1]
    assert list(ours.inputs[0].contents.fp32_contents) == [1.5, -2.0]
    assert ours.inputs[0].parameters["binary_data_size"].int64_param == 8
    assert ours.parameters["priority"].WhichOneof("parameter_choice") == "uint64_param"
    assert ours.outputs[0].parameters["classification"].int64_param == 2
    assert list(ours.raw_input_contents) == [b"\x00\x01"]
    resp = MESSAGES["ModelInferResponse"](model_name="m", id="r1")
    resp.outputs.add(name="y", datatype="INT64", shape=[2])
    resp.raw_output_contents.append(b"\x07" * 16)
    back = stubs.ModelInferResponse.FromString(resp.SerializeToString())
    assert back.outputs[0].name == "y" and back.raw_output_contents[0] == b"\x07" * 16
