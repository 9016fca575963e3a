"""Write ``kserve.schema.json``: a JSON schema of KServe's ``InferenceService``
(serving.kserve.io/v1beta1) and ``ClusterServingRuntime`` / ``ServingRuntime``
(serving.kserve.io/v1alpha1), for validating ``deploy/kserve/*.yaml`` without a cluster.

    python deploy/schema/generate_kserve_schema.py KSERVE_WHEEL_OR_DIR [--out PATH]

The source is the ``kserve`` Python client's model classes (``kserve/models/*.py``), which
KServe generates from the CRDs' OpenAPI schemas: each class lists its fields with their types
(``openapi_types``), their JSON names (``attribute_map``) and which ones must be set. The
files are read as text (parsed with ``ast``), never imported, so the client's dependencies are
not needed. Knative types (in ``status`` only) are left open. Kubernetes types
(``V1Container``, ``V1ObjectMeta``, ...) become references to the Kubernetes definitions that
``kubernetes-validate`` ships (by their ``$id``, ``https://kubernetes.io/api/_definitions.json``);
``tests/deploy/test_manifests.py`` joins the two. Every KServe object is closed
(``additionalProperties: false``), so a misspelt field is an error.

Regenerate when moving to a new KServe release: ``pip download --no-deps kserve==X`` and run
this on the wheel.
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import re
import zipfile
from pathlib import Path

ROOTS = {"InferenceService": "V1beta1InferenceService",
         "ClusterServingRuntime": "V1alpha1ClusterServingRuntime",
         "ServingRuntime": "V1alpha1ServingRuntime"}
#: where kubernetes-validate's Kubernetes definitions live (their own ``$id``)
K8S = "https://kubernetes.io/api/_definitions.json#/$defs/"
SCALARS = {"str": {"type": "string"}, "int": {"type": "integer"},
           "float": {"type": "number"}, "bool": {"type": "boolean"},
           "object": {}, "datetime": {"type": "string"}, "date": {"type": "string"},
           "ResourceQuantity": {"type": ["string", "number"]}}


def read_models(source: Path) -> tuple[dict[str, str], str]:
    """``{file stem: text}`` of ``kserve/models/*.py`` and the kserve version."""
    files: dict[str, str] = {}
    version = "unknown"
    if source.is_file():
        with zipfile.ZipFile(source) as z:
            for name in z.namelist():
                if re.fullmatch(r"kserve/models/[a-z0-9_]+\.py", name):
                    files[Path(name).stem] = z.read(name).decode()
                m = re.fullmatch(r"kserve-([^/]+)\.dist-info/METADATA", name)
                if m:
                    version = m.group(1)
    else:
        for p in (source / "kserve" / "models").glob("*.py"):
            files[p.stem] = p.read_text()
    if not files:
        raise SystemExit(f"{source}: no kserve/models/*.py in it")
    return files, version


def class_info(text: str) -> dict[str, dict]:
    """For each class of a model file: its ``openapi_types``, ``attribute_map`` and the
    attributes its setters refuse to leave unset."""
    tree = ast.parse(text)
    out = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        info: dict = {"types": {}, "names": {}, "required": []}
        for stmt in node.body:
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and \
                    isinstance(stmt.targets[0], ast.Name):
                key = {"openapi_types": "types", "attribute_map": "names"}.get(
                    stmt.targets[0].id)
                if key:
                    info[key] = ast.literal_eval(stmt.value)
        src = ast.get_source_segment(text, node) or ""
        info["required"] = sorted(set(re.findall(
            r"Invalid value for `([a-z0-9_]+)`, must not be `None`", src)))
        out[node.name] = info
    return out


class Builder:
    def __init__(self, classes: dict[str, dict]) -> None:
        self.classes = classes
        self.defs: dict[str, dict] = {}

    def kube_ref(self, name: str) -> dict:
        """``V1Container`` -> core/v1 Container; ``K8sIoApiAppsV1DeploymentStrategy`` -> apps/v1;
        meta types by name."""
        m = re.fullmatch(r"K8sIoApi([A-Z][a-z]+)(V\d+(?:(?:alpha|beta)\d+)?)([A-Za-z0-9]+)", name)
        if m:
            group, ver, kind = m.group(1).lower(), m.group(2).lower(), m.group(3)
            return {"$ref": f"{K8S}io.k8s.api.{group}.{ver}.{kind}"}
        m = re.fullmatch(r"(V\d+(?:(?:alpha|beta)\d+)?)([A-Za-z0-9]+)", name)
        if not m:
            raise SystemExit(f"unknown type {name}")
        ver, kind = m.group(1).lower(), m.group(2)
        meta = {"ObjectMeta", "ListMeta", "Time", "Condition", "LabelSelector", "OwnerReference",
                "ManagedFieldsEntry"}
        if kind in meta:
            return {"$ref": f"{K8S}io.k8s.apimachinery.pkg.apis.meta.{ver}.{kind}"}
        return {"$ref": f"{K8S}io.k8s.api.core.{ver}.{kind}"}

    def type_schema(self, t: str) -> dict:
        t = t.strip()
        if t in SCALARS:
            return dict(SCALARS[t])
        m = re.fullmatch(r"list\[(.+)\]", t)
        if m:
            return {"type": "array", "items": self.type_schema(m.group(1))}
        m = re.fullmatch(r"dict\(str, (.+)\)", t)
        if m:
            return {"type": "object", "additionalProperties": self.type_schema(m.group(1))}
        if t in self.classes:
            self.define(t)
            return {"$ref": f"#/definitions/{t}"}
        if re.match(r"(V\d|K8sIoApi)", t):
            return self.kube_ref(t)
        if t.startswith("Knative"):  # Knative's own types appear in status only
            return {"type": "object"}
        raise SystemExit(f"unknown type {t!r}")

    def define(self, name: str) -> None:
        if name in self.defs:
            return
        info = self.classes[name]
        self.defs[name] = {}  # placeholder against recursion
        props = {info["names"][a]: self.type_schema(t) for a, t in info["types"].items()}
        schema: dict = {"type": "object", "properties": props, "additionalProperties": False}
        req = [info["names"][a] for a in info["required"] if a in info["names"]]
        if req:
            schema["required"] = req
        self.defs[name] = schema


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path, help="kserve wheel (.whl) or an unpacked one")
    ap.add_argument("--out", type=Path,
                    default=Path(__file__).resolve().parent / "kserve.schema.json")
    args = ap.parse_args()
    files, version = read_models(args.source)
    classes: dict[str, dict] = {}
    for text in files.values():
        classes.update(class_info(text))
    b = Builder(classes)
    kinds = {}
    for kind, cls in ROOTS.items():
        b.define(cls)
        kinds[kind] = {"$ref": f"#/definitions/{cls}"}
    api = {"InferenceService": "serving.kserve.io/v1beta1",
           "ClusterServingRuntime": "serving.kserve.io/v1alpha1",
           "ServingRuntime": "serving.kserve.io/v1alpha1"}
    doc = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": "kserve.json",
        "description": f"KServe {version} InferenceService / ServingRuntime, generated by "
                       "deploy/schema/generate_kserve_schema.py from the kserve client's "
                       "model classes",
        "kserve_version": version,
        "api_versions": api,
        "kinds": kinds,
        "definitions": dict(sorted(b.defs.items())),
    }
    buf = io.StringIO()
    json.dump(doc, buf, indent=1, sort_keys=False)
    args.out.write_text(buf.getvalue() + "\n")
    print(f"{args.out}: {len(b.defs)} KServe types from kserve {version}")


if __name__ == "__main__":
    main()
