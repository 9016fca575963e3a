"""Write ``kuberay.schema.json``: a JSON schema of KubeRay's ``RayCluster`` and ``RayJob``
(ray.io/v1), for validating ``deploy/ray/*.yaml`` without a cluster.

    python deploy/schema/generate_kuberay_schema.py KUBERAY_CRD_DIR [--out PATH]

The source is KubeRay's own CustomResourceDefinitions (``ray-operator/config/crd/bases/
ray.io_rayclusters.yaml`` and ``ray.io_rayjobs.yaml`` of a release): the OpenAPI v3 schema of
each kind's storage version, which the API server itself validates against. Two changes make
it a file a test can use:

* **Kubernetes types become references.** The CRDs inline every pod template (the head's,
  each worker group's, the job submitter's): over 2 MB of copies of ``PodTemplateSpec``. Each
  subtree whose fields are exactly those of a Kubernetes type (``PodTemplateSpec``,
  ``Service``, ``Toleration``, ...) becomes a reference to the definitions that
  ``kubernetes-validate`` ships (their ``$id`` is ``https://kubernetes.io/api/
  _definitions.json``); ``tests/deploy/test_manifests.py`` joins the two.
* **Objects are closed.** The API server prunes unknown fields, and ``kubectl apply`` refuses
  them (server-side field validation is Strict by default since Kubernetes 1.27); here every
  object with listed fields gets ``additionalProperties: false`` unless the CRD preserves
  unknown fields there, so a misspelt field is an error.

Regenerate when moving to a new KubeRay release (the release is recorded in the file).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

KINDS = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml"}
K8S = "https://kubernetes.io/api/_definitions.json#/$defs/"
#: Kubernetes types worth a reference: field sets specific enough not to be mistaken
K8S_TYPES = ("io.k8s.api.core.v1.PodTemplateSpec", "io.k8s.api.core.v1.Service",
             "io.k8s.api.core.v1.Toleration", "io.k8s.api.core.v1.Volume",
             "io.k8s.api.core.v1.Container", "io.k8s.api.core.v1.EnvVar",
             "io.k8s.api.core.v1.ResourceRequirements",
             "io.k8s.api.core.v1.PersistentVolumeClaim",
             "io.k8s.api.core.v1.ObjectReference",
             "io.k8s.apimachinery.pkg.apis.meta.v1.Condition")


def storage_schema(crd: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The storage version's name and OpenAPI v3 schema of a CRD."""
    for v in crd["spec"]["versions"]:
        if v.get("storage"):
            return v["name"], v["schema"]["openAPIV3Schema"]
    raise SystemExit(f"{crd['metadata']['name']}: no storage version")


def k8s_fields(definitions: dict[str, Any]) -> dict[frozenset[str], str]:
    out = {}
    for name in K8S_TYPES:
        props = definitions[name].get("properties") or {}
        out[frozenset(props)] = name
    return out


def rewrite(node: Any, known: dict[frozenset[str], str], top: bool = True) -> Any:
    """References for Kubernetes types, closed objects elsewhere (see the module docstring)."""
    if isinstance(node, list):
        return [rewrite(n, known, False) for n in node]
    if not isinstance(node, dict):
        return node
    props = node.get("properties")
    if not top and isinstance(props, dict) and frozenset(props) in known \
            and not node.get("x-kubernetes-preserve-unknown-fields"):
        out = {"$ref": K8S + known[frozenset(props)]}
        if node.get("description"):
            out["description"] = node["description"]
        return out
    out = {k: rewrite(v, known, False) for k, v in node.items()}
    if (isinstance(props, dict) and node.get("type") == "object"
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("crd_dir", type=Path, help="KubeRay's ray-operator/config/crd/bases")
    ap.add_argument("--release", required=True, help="the KubeRay release, e.g. v1.7.0")
    ap.add_argument("--out", type=Path,
                    default=Path(__file__).with_name("kuberay.schema.json"))
    args = ap.parse_args(argv)
    import kubernetes_validate as kv

    pkg = Path(kv.__file__).parent / "kubernetes-json-schema" / "v1.30.0-local-strict"
    definitions = json.loads((pkg / "_definitions.json").read_text())["$defs"]
    known = k8s_fields(definitions)
    kinds, versions = {}, {}
    for kind, name in KINDS.items():
        crd = yaml.safe_load((args.crd_dir / name).read_text())
        version, schema = storage_schema(crd)
        versions[kind] = f"{crd['spec']['group']}/{version}"
        schema = rewrite(schema, known)
        # apiVersion/kind/metadata are the API server's; the manifest must name this kind
        schema["properties"]["apiVersion"] = {"const": versions[kind]}
        schema["properties"]["kind"] = {"const": kind}
        schema["properties"]["metadata"] = {
            "$ref": K8S + "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
        schema["required"] = sorted(set(schema.get("required", [])) |
                                    {"apiVersion", "kind", "metadata", "spec"})
        kinds[kind] = schema
    doc = {"$schema": "http://json-schema.org/draft-07/schema#",
           "description": f"KubeRay {args.release} RayCluster and RayJob (storage versions), "
                          "from its CRDs; written by deploy/schema/generate_kuberay_schema.py",
           "release": args.release, "api_versions": versions, "kinds": kinds}
    args.out.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
