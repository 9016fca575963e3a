"""Check KServe manifests against the rules of the mode they run in (``rules.json``, generated
from Knative Serving's and KServe's sources by ``generate_rules.py``).

    python deploy/schema/check_rules.py deploy/kserve/*.yaml [--feature KEY=Enabled ...]

* In Knative mode (``serving.kserve.io/deploymentMode: Serverless`` or ``Knative``) the
  predictor becomes a Knative revision: every pod-spec and container field it sets, and those
  of the serving runtime's containers, must be on Knative's allow-list (a field behind a
  feature flag needs the flag enabled in ``config-features``; ``--feature`` says which are);
  one container port, named ``http1`` or ``h2c``; no reserved env var, container name or
  mount path; a scale metric the Knative autoscaler knows (``concurrency``, ``rps``).
* In raw mode (``RawDeployment`` or ``Standard``, KServe's default where no annotation says)
  the HPA scales: the metric must be ``cpu`` or ``memory`` and a CPU target 1-100 %.
* In both, env vars KServe blocks (``PYTHONPATH``) are refused.

The schema itself (field names and types) is ``kserve.schema.json``'s job; this checks what a
schema cannot see. Exit status 1 when any manifest breaks a rule.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

RULES = Path(__file__).with_name("rules.json")
K8S_VERSION = "1.30.0"


def _k8s() -> dict:
    import kubernetes_validate

    base = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    data = json.loads((base / f"v{K8S_VERSION}-local-strict" / "_definitions.json").read_text())
    return data["$defs"]


class Checker:
    """Rule checks of InferenceServices (and the runtimes they use) in their mode."""

    def __init__(self, rules: dict | None = None, features: dict[str, str] | None = None
                 ) -> None:
        self.rules = rules or json.loads(RULES.read_text())
        self.features = {**self.rules["knative"]["feature_defaults"], **(features or {})}
        self.defs = _k8s()

    # ------------------------------------------------------------------ the Knative masks
    def _props(self, type_name: str) -> dict:
        return self.defs.get(f"io.k8s.api.core.v1.{type_name}", {}).get("properties", {})

    def _allowed(self, rule: dict, value: Any) -> str | None:
        """None when Knative keeps the field with this value, else why not."""
        kind = rule["rule"]
        if kind == "allowed":
            return None
        if kind == "disallowed":
            return "Knative drops it from every revision"
        if kind == "gated":
            if any(self.features.get(f) in ("Enabled", "Allowed") for f in rule["flags"]):
                return None
            return ("needs one of the Knative features " + ", ".join(rule["flags"]) +
                    " enabled in config-features (disabled by default)")
        m = re.fullmatch(r"in\.(\w+) != nil && !\*in\.\1", rule.get("condition", ""))
        if m:  # kept only when false
            return None if value is False else "Knative keeps it only when it is false"
        return f"Knative keeps it only when {rule.get('condition')}"

    def fields(self, type_name: str, obj: Any, path: str) -> list[str]:
        """Problems of ``obj`` (a ``type_name``) under Knative's masks, recursively."""
        rules = self.rules["knative"]["types"].get(type_name)
        if rules is None or not isinstance(obj, dict):
            return []
        props = self._props(type_name)
        problems = []
        for key, value in obj.items():
            rule = rules.get(key)
            if rule is None:
                if key in props:  # a Kubernetes field the mask never copies
                    problems.append(f"{path}.{key}: Knative drops it from every revision")
                continue
            why = self._allowed(rule, value)
            if why:
                problems.append(f"{path}.{key}: {why}")
                continue
            ref = props.get(key, {})
            target = ref.get("$ref") or ref.get("items", {}).get("$ref") or ""
            inner = target.rsplit(".", 1)[-1]
            items = value if isinstance(value, list) else [value]
            for i, item in enumerate(items):
                sub = f"{path}.{key}[{i}]" if isinstance(value, list) else f"{path}.{key}"
                problems += self.fields(inner, item, sub)
        return problems

    def _container(self, c: dict, path: str) -> list[str]:
        k = self.rules["knative"]
        problems = self.fields("Container", {f: v for f, v in c.items()
                                             if f in self._props("Container")}, path)
        if c.get("name") in k["reserved_container_names"]:
            problems.append(f"{path}.name: {c['name']!r} is reserved by Knative")
        for e in c.get("env") or []:
            if e.get("name") in k["reserved_env_vars"]:
                problems.append(f"{path}.env: {e['name']} is reserved by Knative")
        for vm in c.get("volumeMounts") or []:
            if vm.get("mountPath") in k["reserved_paths"]:
                problems.append(f"{path}.volumeMounts: {vm['mountPath']} is reserved")
        return problems

    def _ports(self, containers: list[tuple[str, dict]]) -> list[str]:
        k = self.rules["knative"]
        ports = [(path, p) for path, c in containers for p in c.get("ports") or []]
        problems = []
        if k["single_port"] and len(ports) > 1:
            problems.append(f"{ports[1][0]}.ports: Knative allows a single port across all "
                            f"containers, {len(ports)} are set")
        for path, p in ports:
            if p.get("name", "") not in k["port_names"]:
                problems.append(f"{path}.ports: port name {p.get('name')!r} is not one of "
                                f"{[n for n in k['port_names'] if n]}")
        return problems

    # ------------------------------------------------------------------ KServe
    def mode(self, isvc: dict) -> str:
        ks = self.rules["kserve"]
        mode = (isvc.get("metadata", {}).get("annotations") or {}).get(ks["mode_annotation"])
        return mode or ks["default_mode"]

    def isvc(self, isvc: dict, runtimes: dict[str, dict]) -> list[str]:
        """Problems of one InferenceService in its mode."""
        ks = self.rules["kserve"]
        name = isvc.get("metadata", {}).get("name", "?")
        pred = isvc.get("spec", {}).get("predictor", {})
        mode = self.mode(isvc)
        where = f"{name} ({mode})"
        model = pred.get("model") or {}
        runtime = runtimes.get(model.get("runtime"), {})
        containers = [(f"{where}: spec.predictor.model", model)] + \
            [(f"{where}: spec.predictor.containers[{i}]", c)
             for i, c in enumerate(pred.get("containers") or [])] + \
            [(f"{where}: runtime {model.get('runtime')}.containers[{i}]", c)
             for i, c in enumerate(runtime.get("spec", {}).get("containers") or [])]
        problems = [f"{path}.env: {e['name']} is blocked by KServe"
                    for path, c in containers for e in c.get("env") or []
                    if e.get("name") in ks["blocked_env_vars"]]
        annotations = isvc.get("metadata", {}).get("annotations") or {}
        metric = pred.get("scaleMetric")
        if mode in ks["knative_modes"]:
            podspec = {k: v for k, v in pred.items() if k in self._props("PodSpec")}
            problems += self.fields("PodSpec", podspec, f"{where}: spec.predictor")
            for path, c in containers:
                problems += self._container(c, path)
            # the model's ports replace the runtime's (KServe merges the model spec into it)
            problems += self._ports(containers[:1] if model.get("ports") else containers[1:])
            hpa = annotations.get("autoscaling.knative.dev/class", "").startswith("hpa")
            allowed = ks["hpa_metrics"] if hpa else ks["kpa_metrics"]
            metric = metric or (ks["default_hpa_metric"] if hpa else ks["default_kpa_metric"])
            if metric not in allowed:
                problems.append(f"{where}: spec.predictor.scaleMetric {metric!r}: the Knative "
                                f"autoscaler scales on {allowed}")
            problems += [f"{where}: spec.predictor.{f}: only in raw deployment mode"
                         for f in ks["raw_only_fields"] if f in pred]
        elif mode in ks["raw_modes"]:
            cls = annotations.get(ks["autoscaler_class_annotation"],
                                  ks["default_raw_autoscaler_class"])
            if cls == "hpa":
                metric = metric or ks["default_hpa_metric"]
                if metric not in ks["hpa_metrics"]:
                    problems.append(f"{where}: spec.predictor.scaleMetric {metric!r}: raw "
                                    f"deployment mode scales with the HPA on "
                                    f"{ks['hpa_metrics']} (concurrency needs Knative)")
                target = pred.get("scaleTarget")
                if metric == "cpu" and target is not None and not 1 <= target <= 100:
                    problems.append(f"{where}: spec.predictor.scaleTarget {target}: a CPU "
                                    "utilisation percentage is 1-100")
        else:
            problems.append(f"{where}: unknown deployment mode {mode!r} (use one of "
                            f"{ks['knative_modes'] + ks['raw_modes']})")
        return problems

    def documents(self, docs: list[dict]) -> list[str]:
        runtimes = {d["metadata"]["name"]: d for d in docs
                    if d.get("kind") in ("ClusterServingRuntime", "ServingRuntime")}
        return [p for d in docs if d.get("kind") == "InferenceService"
                for p in self.isvc(d, runtimes)]


def main() -> None:
    import yaml

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--feature", action="append", default=[], metavar="KEY=Enabled",
                    help="a Knative config-features flag as the cluster sets it")
    args = ap.parse_args()
    features = dict(f.split("=", 1) for f in args.feature)
    docs = [d for f in args.files for d in yaml.safe_load_all(f.read_text()) if d]
    problems = Checker(features=features).documents(docs)
    for p in problems:
        print(p)
    print(f"{len(problems)} problem(s) in {len(args.files)} file(s)", file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
