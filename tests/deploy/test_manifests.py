"""The deployment manifests in deploy/: valid against the Kubernetes schemas of
``kubernetes-validate`` (strict: unknown fields are errors) and against KServe's
InferenceService / ServingRuntime schema (deploy/schema/kserve.schema.json, generated from the
kserve client's model classes), and consistent with what `deepseek serve` does."""

from __future__ import annotations

import copy
import json
import re
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


def _crd_validator(schema_file: str):
    """A validator of the kinds in ``deploy/schema/<schema_file>``, its Kubernetes types
    resolved against kubernetes-validate's definitions (strict: unknown fields refused)."""
    import jsonschema
    import referencing
    from referencing.jsonschema import DRAFT7, DRAFT202012

    schema = json.loads((DEPLOY / "schema" / schema_file).read_text())
    pkg = Path(kv.__file__).parent / "kubernetes-json-schema" / f"v{K8S_VERSION}-local-strict"
    k8s = json.loads((pkg / "_definitions.json").read_text())
    registry = referencing.Registry().with_resources([
        (k8s["$id"], referencing.Resource(contents=k8s, specification=DRAFT202012)),
        ("crd.json", referencing.Resource(contents=schema, specification=DRAFT7)),
    ])

    def validate(doc):
        kind = doc.get("kind")
        assert doc.get("apiVersion") == schema["api_versions"][kind], doc.get("apiVersion")
        root = {"$ref": f"crd.json#/kinds/{kind}"}
        jsonschema.Draft7Validator(root, registry=registry).validate(doc)

    validate.schema = schema
    return validate


def _changed(doc, path, value):
    """A copy of ``doc`` with the field at ``path`` (keys and list indices) set to ``value``."""
    bad = copy.deepcopy(doc)
    node = bad
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return bad


@pytest.fixture(scope="module")
def kserve_validator():
    return _crd_validator("kserve.schema.json")


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
        with pytest.raises(jsonschema.ValidationError):
            kserve_validator(_changed(isvc, path, value))
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


@pytest.fixture(scope="module")
def rules():
    import importlib.util

    spec = importlib.util.spec_from_file_location("check_rules",
                                                  DEPLOY / "schema" / "check_rules.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.Checker()


def test_kserve_manifests_keep_knatives_and_kserves_rules(rules):
    docs = [d for _, d in _docs("kserve/*.yaml")]
    assert rules.documents(docs) == []
    modes = {d["metadata"]["name"]: rules.mode(d) for d in docs
             if d["kind"] == "InferenceService"}
    assert set(modes.values()) == {"Serverless", "RawDeployment"}  # both modes shipped
    assert rules.rules["sources"]["knative/serving"] and rules.rules["sources"]["kserve/kserve"]


def _broken(docs, name, edit):
    docs = copy.deepcopy(docs)
    isvc = next(d for d in docs if d["metadata"]["name"] == name)
    edit(isvc, next(d for d in docs if d["kind"] == "ClusterServingRuntime"))
    return docs


@pytest.mark.parametrize("name, edit, message", [
    ("deepseek-tick-mlp",  # the old manifests' mistake: Knative refuses it
     lambda i, r: i["spec"]["predictor"].update(terminationGracePeriodSeconds=50),
     "terminationGracePeriodSeconds: Knative drops it"),
    ("deepseek-tick-mlp", lambda i, r: i["spec"]["predictor"].update(nodeSelector={"a": "b"}),
     "nodeSelector: needs one of the Knative features kubernetes.podspec-nodeselector"),
    ("deepseek-tick-mlp", lambda i, r: i["spec"]["predictor"]["model"].update(
        lifecycle={"preStop": {"exec": {"command": ["sleep", "5"]}}}),
     "model.lifecycle: Knative drops it"),
    ("deepseek-tick-mlp", lambda i, r: i["spec"]["predictor"]["model"]["ports"].append(
        {"name": "h2c", "containerPort": 8081}), "a single port across all containers"),
    ("deepseek-tick-mlp", lambda i, r: i["spec"]["predictor"]["model"]["ports"][0].update(
        name="http"), "port name 'http' is not one of"),
    ("deepseek-tick-mlp", lambda i, r: i["spec"]["predictor"].update(scaleMetric="cpu"),
     "the Knative autoscaler scales on"),
    ("deepseek-tick-mlp", lambda i, r: r["spec"]["containers"][0]["env"].append(
        {"name": "K_SERVICE", "value": "x"}), "K_SERVICE is reserved by Knative"),
    ("deepseek-tick-mlp-raw",  # concurrency scaling needs Knative
     lambda i, r: i["spec"]["predictor"].update(scaleMetric="concurrency"),
     "raw deployment mode scales with the HPA on ['cpu', 'memory']"),
    ("deepseek-tick-mlp-raw", lambda i, r: i["spec"]["predictor"].update(scaleTarget=150),
     "a CPU utilisation percentage is 1-100"),
    ("deepseek-tick-mlp-raw", lambda i, r: i["spec"]["predictor"]["model"]["env"].append(
        {"name": "PYTHONPATH", "value": "/x"}), "PYTHONPATH is blocked by KServe"),
    ("deepseek-tick-mlp-raw",  # without the annotation KServe's default mode decides
     lambda i, r: i["metadata"]["annotations"].update({
         "serving.kserve.io/deploymentMode": "Knative"}) or
     i["spec"]["predictor"].update(scaleMetric="concurrency"),
     "terminationGracePeriodSeconds: Knative drops it"),
])
def test_the_rule_check_refuses_each_bad_field(rules, name, edit, message):
    docs = _broken([d for _, d in _docs("kserve/*.yaml")], name, edit)
    problems = rules.documents(docs)
    assert any(message in p for p in problems), problems


def test_one_image_tag_scheme():
    """`make image` tags deepseek/framework:<version>-<form>; the manifests and the serving
    page use that tag."""
    import subprocess

    from deepseek import __version__

    root = DEPLOY.parent
    tag = subprocess.run(["make", "-s", "-C", str(root), "image-tag"], capture_output=True,
                         text=True, check=True).stdout.strip()
    assert tag == f"deepseek/framework:{__version__}-edge"
    images = []
    for _, d in _docs("kserve/*.yaml") + _docs("kubernetes/*.yaml"):
        spec = d.get("spec", {})
        pod = spec.get("template", {}).get("spec", spec)
        images += [c["image"] for c in pod.get("containers", []) if "image" in c]
    assert images and set(images) == {tag}
    assert tag in (root / "docs" / "serving.md").read_text()


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

    assert delay >= 1  # the runtime's default: the raw pods' pre-stop delay
    services = [d for _, d in docs if d["kind"] == "InferenceService"]
    ports = set()
    for isvc in services:
        pred = isvc["spec"]["predictor"]
        mode = isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"]
        assert pred["minReplicas"] >= 1 and pred["maxReplicas"] > pred["minReplicas"]
        model = pred["model"]
        assert model["runtime"] == runtime["metadata"]["name"]
        env = {e["name"]: float(e["value"]) for e in model["env"]}
        drain = env["DEEPSEEK_SERVING_DRAIN_DELAY"]
        if mode == "Serverless":
            # Knative's grace period is the revision's timeout; its queue-proxy drains
            assert pred["scaleMetric"] == "concurrency" and drain == 0
            assert pred["timeout"] >= params["timeout_s"]
        else:  # the pod's grace period covers the drain delay and the longest request
            assert pred["scaleMetric"] == "cpu" and drain >= 1
            assert pred["terminationGracePeriodSeconds"] >= drain + params["timeout_s"]
        ports |= {(model["protocolVersion"], p["name"], p["containerPort"])
                  for p in model["ports"]}
        probe = model["readinessProbe"]
        if "httpGet" in probe:
            assert probe["httpGet"]["path"] == "/v2/health/ready"
        else:  # the gRPC health service the server runs
            assert probe["grpc"]["port"] == params["grpc_port"]
    assert ports == {("v2", "http1", 8080), ("grpc-v2", "h2c", 8081), ("v2", "h2c", 8081)}

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


def test_the_image_locks_pin_every_dependency_with_a_hash():
    """deploy/image/*.lock (written by deploy/image/lock.py): each line a version and a
    sha256, and every third-party requirement of the form's extras pinned."""
    import tomllib
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    root = DEPLOY.parent
    core = tomllib.loads((root / "core" / "pyproject.toml").read_text())["project"]
    plugins = {p: tomllib.loads((root / "plugins" / p / "pyproject.toml").read_text())
               ["project"] for p in ("medical", "manufacturing", "finance")}

    def needs(project, extras):
        reqs = list(project.get("dependencies", []))
        for e in extras:
            reqs += project["optional-dependencies"][e]
        return {canonicalize_name(Requirement(r).name) for r in reqs} - \
            {n for n in map(canonicalize_name, ("deepseek-core", "deepseek-medical",
                                                "deepseek-manufacturing", "deepseek-finance",
                                                "torch"))}

    forms = {"edge": needs(core, ["serve", "runtime"]),
             "edge-all": needs(core, ["serve", "runtime"]).union(
                 *(needs(p, ["edge"]) for p in plugins.values())),
             "full": needs(core, ["serve", "onnx", "tune"]).union(
                 *(needs(p, ["full", "edge"]) for p in plugins.values()))}
    for form, wanted in forms.items():
        lines = [ln for ln in (DEPLOY / "image" / f"{form}.lock").read_text().splitlines()
                 if ln and not ln.startswith("#")]
        pinned = {}
        for ln in lines:
            m = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+) --hash=sha256:[0-9a-f]{64}", ln)
            assert m, f"{form}.lock: {ln!r}"
            pinned[canonicalize_name(m.group(1))] = m.group(2)
        assert wanted <= set(pinned), f"{form}.lock lacks {sorted(wanted - set(pinned))}"
        assert "torch" not in pinned  # PyTorch comes from the TORCH build argument


# -- KubeRay: deploy/ray ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def kuberay_validator():
    return _crd_validator("kuberay.schema.json")


def test_kuberay_manifests_are_valid(kuberay_validator):
    import jsonschema

    docs = _docs("ray/*.yaml")
    assert sorted(d["kind"] for _, d in docs) == ["PersistentVolumeClaim", "RayCluster",
                                                  "RayJob"]
    for _, d in docs:
        if d["kind"] in kuberay_validator.schema["kinds"]:
            kuberay_validator(d)
        else:
            kv.validate(d, K8S_VERSION, strict=True)
    cluster = next(d for _, d in docs if d["kind"] == "RayCluster")
    job = next(d for _, d in docs if d["kind"] == "RayJob")
    for doc, path, value in (
            (cluster, ("spec", "headGroupSpec", "rayStartParam"), {}),          # misspelt
            (cluster, ("spec", "workerGroupSpecs", 0, "maxReplica"), 3),        # misspelt
            (cluster, ("spec", "workerGroupSpecs", 0, "replicas"), "two"),      # wrong type
            (cluster, ("spec", "headGroupSpec", "template", "spec", "containers", 0,
                       "imagePullPolicy"), 5),                  # inside the k8s pod template
            (job, ("spec", "shutdownAfterJobFinish"), True),                     # misspelt
            (job, ("spec", "rayClusterSpec", "headGroupSpec", "template", "spec",
                   "volumes", 0, "persistentVolumeClaim", "claim"), "x")):
        with pytest.raises(jsonschema.ValidationError):
            kuberay_validator(_changed(doc, path, value))


def test_kuberay_manifests_run_the_batch_command_on_the_full_image():
    """The RayJob's entrypoint is a `deepseek batch` command line the real CLI parses, on the
    Ray cluster KubeRay makes for it; its cluster is raycluster.yaml's; the image is the one
    `make image TARGET=full` tags, with the Ray its lock pins."""
    import re
    import subprocess

    from deepseek.cli import build_cli

    docs = _docs("ray/*.yaml")
    cluster = next(d for _, d in docs if d["kind"] == "RayCluster")
    job = next(d for _, d in docs if d["kind"] == "RayJob")
    pvc = next(d for _, d in docs if d["kind"] == "PersistentVolumeClaim")
    assert job["spec"]["rayClusterSpec"] == cluster["spec"]   # one cluster, written twice
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:2] == ["deepseek", "batch"]
    ctx = build_cli().commands["batch"].make_context("batch", argv[2:])
    assert ctx.params["cluster"] == "ray"        # the RAY_ADDRESS KubeRay sets on the head
    assert " ".join(ctx.params["step"]) == "medical detect"
    assert all(p.startswith("/data/") for p in ctx.params["inputs"])
    assert str(ctx.params["out_dir"]).startswith("/data/")

    lock = (DEPLOY / "image" / "full.lock").read_text()
    ray_locked = re.search(r"^ray==([\d.]+) ", lock, re.M).group(1)
    spec = cluster["spec"]
    assert spec["rayVersion"] == ray_locked
    assert tuple(int(x) for x in ray_locked.split(".")[:2]) >= (2, 53)  # HTTP health probes
    tag = subprocess.run(["make", "-s", "-C", str(DEPLOY.parent), "image-tag", "TARGET=full"],
                         capture_output=True, text=True, check=True).stdout.strip()
    groups = [spec["headGroupSpec"]] + spec["workerGroupSpecs"]
    for group in groups:
        pod = group["template"]["spec"]
        [c] = pod["containers"]
        assert c["image"] == tag
        # every pod mounts the shared volume at /data: actors read the driver's paths
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]}
        mounts = {m["mountPath"]: claims[m["name"]] for m in c["volumeMounts"]}
        assert mounts == {"/data": pvc["metadata"]["name"]}
        assert c["resources"]["requests"] == c["resources"]["limits"]
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"   # no actor on the head
    for g in spec["workerGroupSpecs"]:
        assert g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]
        assert float(g["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"]) \
            >= float(ctx.params["cpus_per_worker"])
