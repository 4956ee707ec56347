"""The wire contract: one node-name rule on both sides, and records that match the schema."""

from __future__ import annotations

import contextlib
import io

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.cli import parse_settings as parse_agent_settings
from collector.settings import IngestLimits
from collector.validation import POD_SCHEMA, BatchValidator, IngestError, batch_schema
from kubecarbon import wire

LONG_LABEL_NODE = "worker-" + "x" * 60 + ".example.internal"  # first label: 67 characters


def report(node: str = "ip-10-0-1-17") -> wire.Report:
    return {
        "schema": wire.SCHEMA_VERSION, "node": node, "agent_id": "a1", "seq": 1,
        "start": 1_764_072_000.0, "end": 1_764_072_015.0,
        "cpu": {"logical_cpus": 4, "busy_seconds": 12.0},
    }


@pytest.mark.parametrize("name", [
    "ip-10-0-1-17.ec2.internal", "a", "0", "10.0.1.17", "aks-nodepool1-12345678-vmss000000",
    LONG_LABEL_NODE, "a" * 253, ("b" * 100 + ".") * 2 + "c" * 51,
])
def test_kubernetes_node_names_are_accepted(name):
    assert wire.is_node_name(name)


@pytest.mark.parametrize("name", [
    "", "UPPER", "under_score", "-leading", "trailing-", "a..b", ".a", "a.", "a b",
    "x" * 254, "é", "node\n", "a/b",
])
def test_names_kubernetes_refuses_are_refused(name):
    assert not wire.is_node_name(name)


VALIDATOR = BatchValidator.for_limits()  # compiling the schema takes tens of ms


def _collector_accepts(name: str) -> bool:
    try:
        VALIDATOR.parse(orjson.dumps({"reports": [report(name)]}))
    except IngestError as exc:
        assert exc.field == "reports[0].node"
        return False
    return True


def _agent_accepts(name: str) -> bool:
    with contextlib.redirect_stderr(io.StringIO()), contextlib.suppress(SystemExit):
        settings_, _ = parse_agent_settings(
            ["--collector-url", "http://c:9880", "--node-name", name], env={})
        return settings_.node_name == name
    return False


node_names = st.one_of(
    st.text(alphabet="az09-.A_", max_size=80),
    st.from_regex(wire.NODE_NAME_PATTERN, fullmatch=True).filter(lambda name: len(name) < 300),
    st.integers(62, 70).map(lambda size: "n" * size + ".a"),
    st.integers(250, 256).map(lambda size: "n" * size),
)


@settings(max_examples=200, deadline=None)  # no timing: a busy shared machine is slow
@given(node_names)
def test_agent_and_collector_accept_the_same_node_names(name):
    expected = wire.is_node_name(name)
    assert _collector_accepts(name) == expected
    assert _agent_accepts(name) == expected


def _schema_keys(schema: dict) -> tuple[set[str], set[str]]:
    return set(schema["required"]), set(schema["properties"])


@pytest.mark.parametrize(("record", "path"), [
    (wire.Report, ()),
    (wire.CpuSection, ("cpu",)),
    (wire.MemorySection, ("memory",)),
    (wire.RaplSection, ("rapl",)),
])
def test_typed_records_name_the_fields_of_the_collector_schema(record, path):
    schema = batch_schema(IngestLimits())["properties"]["reports"]["items"]
    for key in path:
        schema = schema["properties"][key]
    required, everything = _schema_keys(schema)
    assert record.__required_keys__ == required
    assert record.__required_keys__ | record.__optional_keys__ == everything


def test_the_pod_row_names_the_fields_of_the_pod_schema():
    assert wire.PodRow.__required_keys__ == set(POD_SCHEMA["required"])
    assert set(POD_SCHEMA["properties"]) == set(wire.PodRow.__annotations__)


def test_the_collector_enforces_the_documented_limits_by_default():
    validator = BatchValidator.for_limits()
    too_short = {**report(), "end": 1_764_072_000.0 + wire.MIN_WINDOW_SECONDS / 2}
    with pytest.raises(IngestError) as short:
        validator.parse(orjson.dumps({"reports": [too_short]}))
    assert short.value.field == "reports[0].end"
    too_many = [{**report(), "seq": seq} for seq in range(wire.MAX_REPORTS_PER_BATCH + 1)]
    with pytest.raises(IngestError) as many:
        validator.parse(orjson.dumps({"reports": too_many}))
    assert many.value.status == 413
    assert len(validator.parse(orjson.dumps({"reports": too_many[:-1]}))) == 500
