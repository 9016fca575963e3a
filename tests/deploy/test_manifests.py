"""The deployment manifests in deploy/: valid against the Kubernetes schemas of
``kubernetes-validate`` (strict: unknown fields are errors) and against KServe's
InferenceService / ServingRuntime schema (deploy/schema/kserve.schema.json, generated from the
kserve client's model classes), and consistent with what `deepseek serve` does."""

from __future__ import annotations

import copy
import json
import shlex
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")
kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed "
                         "(requirements-dev.txt)")

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S_VERSION = "1.30.0"   # the oldest Kubernetes release these manifests are written for
KSERVE_KINDS = {"InferenceService", "ClusterServingRuntime", "ServingRuntime"}


def _docs(pattern):
    out = []
    for p in sorted(DEPLOY.glob(pattern)):
        out += [(p.name, d) for d in yaml.safe_load_all(p.read_text()) if d]
    return out


@pytest.fixture(scope="module")
def kserve_validator():
    import jsonschema
    import referencing
    from referencing.jsonschema import DRAFT7, DRAFT202012

    schema = json.loads((DEPLOY / "schema" / "kserve.schema.json").read_text())
    pkg = Path(kv.__file__).parent / "kubernetes-json-schema" / f"v{K8S_VERSION}-local-strict"
    k8s = json.loads((pkg / "_definitions.json").read_text())
    registry = referencing.Registry().with_resources([
        (k8s["$id"], referencing.Resource(contents=k8s, specification=DRAFT202012)),
        ("kserve.json", referencing.Resource(contents=schema, specification=DRAFT7)),
    ])

    def validate(doc):
        kind = doc.get("kind")
        assert doc.get("apiVersion") == schema["api_versions"][kind], doc.get("apiVersion")
        root = {"$ref": f"kserve.json#/kinds/{kind}"}
        jsonschema.Draft7Validator(root, registry=registry).validate(doc)

    return validate


def test_kubernetes_manifests_are_valid():
    docs = _docs("kubernetes/*.yaml")
    assert {d["kind"] for _, d in docs} == {"Deployment", "Service", "HorizontalPodAutoscaler"}
    for _, d in docs:
        kv.validate(d, K8S_VERSION, strict=True)
    # strict: a misspelt field is refused
    bad = copy.deepcopy(next(d for _, d in docs if d["kind"] == "Deployment"))
    bad["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, K8S_VERSION, strict=True)


def test_kserve_manifests_are_valid(kserve_validator):
    docs = _docs("kserve/*.yaml")
    assert {d["kind"] for _, d in docs} == {"InferenceService", "ClusterServingRuntime"}
    for _, d in docs:
        kserve_validator(d)
    import jsonschema

    isvc = next(d for _, d in docs if d["kind"] == "InferenceService")
    for path, value in ((("spec", "predictor", "minReplica"), 1),            # misspelt
                        (("spec", "predictor", "model", "ports"), [{"port": 1}]),  # k8s type
                        (("spec", "predictor", "maxReplicas"), "ten")):      # wrong type
        bad = copy.deepcopy(isvc)
        node = bad
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        with pytest.raises(jsonschema.ValidationError):
            kserve_validator(bad)
    bad = copy.deepcopy(isvc)
    del bad["spec"]["predictor"]["model"]["modelFormat"]                      # required
    with pytest.raises(jsonschema.ValidationError):
        kserve_validator(bad)


def _serve_args(args):
    """Parse a container's args with the real `deepseek serve` command (nothing runs)."""
    from deepseek.cli import build_cli

    assert args[0] == "serve", args
    cmd = build_cli().commands["serve"]
    ctx = cmd.make_context("serve", list(args[1:]))
    return ctx.params


def test_manifests_match_the_server():
    docs = _docs("kserve/*.yaml") + _docs("kubernetes/*.yaml")
    runtime = next(d for _, d in docs if d["kind"] == "ClusterServingRuntime")
    [container] = runtime["spec"]["containers"]
    params = _serve_args(container["args"])
    assert params["models"] == ("/mnt/models",) and params["host"] == "0.0.0.0"
    assert params["name"] == "{{.Name}}"   # KServe fills in the InferenceService's name
    assert (params["port"], params["grpc_port"]) == (8080, 8081)
    assert set(runtime["spec"]["protocolVersions"]) == {"v2", "grpc-v2"}
    env = {e["name"]: e for e in container["env"]}
    delay = float(env["DEEPSEEK_SERVING_DRAIN_DELAY"]["value"])

    services = [d for _, d in docs if d["kind"] == "InferenceService"]
    ports = {}
    for isvc in services:
        pred = isvc["spec"]["predictor"]
        assert pred["minReplicas"] >= 1 and pred["maxReplicas"] > pred["minReplicas"]
        assert pred["scaleMetric"] == "concurrency" and pred["scaleTarget"] > 0
        # the grace period covers the drain delay and the longest request
        assert pred["terminationGracePeriodSeconds"] >= delay + params["timeout_s"]
        model = pred["model"]
        assert model["runtime"] == runtime["metadata"]["name"]
        [port] = model["ports"]
        ports[model["protocolVersion"]] = (port["name"], port["containerPort"])
        probe = model["readinessProbe"]
        if "httpGet" in probe:
            assert probe["httpGet"]["path"] == "/v2/health/ready"
    assert ports == {"v2": ("http1", 8080), "grpc-v2": ("h2c", 8081)}

    deploy = next(d for _, d in docs if d["kind"] == "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    [c] = pod["containers"]
    params = _serve_args(c["args"])
    env = {e["name"]: e for e in c["env"]}
    assert pod["terminationGracePeriodSeconds"] >= \
        float(env["DEEPSEEK_SERVING_DRAIN_DELAY"]["value"]) + params["timeout_s"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    named = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert named == {"http": params["port"], "grpc": params["grpc_port"]}
    svc = next(d for _, d in docs if d["kind"] == "Service")
    assert {p["targetPort"] for p in svc["spec"]["ports"]} == set(named)
    hpa = next(d for _, d in docs if d["kind"] == "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deploy["metadata"]["name"]
    assert shlex.join(c["args"])  # plain strings only
