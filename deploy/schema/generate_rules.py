"""Write ``rules.json``: the rules a KServe InferenceService must follow beyond its schema,
read from the sources of Knative Serving and KServe, for ``check_rules.py``.

    python deploy/schema/generate_rules.py KNATIVE_SERVING_DIR KSERVE_DIR [--out PATH]

Each DIR is a git checkout (or a bare git directory: files are read with ``git show HEAD:``)
of https://github.com/knative/serving and https://github.com/kserve/kserve. Go files are read
as text, never built:

* Knative Serving ``pkg/apis/serving/fieldmask.go``: for each Kubernetes type Knative
  accepts in a revision (``PodSpec``, ``Container``, ``Probe``, ``ContainerPort`` ...), the
  fields it keeps (``out.F = in.F``), those it keeps only behind a feature flag
  (``if cfg.Features.X != config.Disabled``) or another condition, and those it drops.
  Go field names become JSON names through the Kubernetes schema that ``kubernetes-validate``
  ships; embedded structs (``ProbeHandler``, ``VolumeSource``) are expanded.
* ``pkg/apis/config/features.go``: each flag's config key and its default.
* ``pkg/apis/serving/k8s_validation.go``: reserved env vars, container names and mount paths,
  the valid port names, and the one-port-per-revision rule.
* KServe ``pkg/constants/constants.go``: the deployment-mode annotation and its values
  (legacy names included), the default mode, the autoscaler-class annotation, and the scale
  metrics each autoscaler accepts; ``pkg/validation/env_policy.go``: blocked env vars.

Regenerate when moving to new releases of either project, and commit the result with the
source commits it records.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from pathlib import Path

K8S_VERSION = "1.30.0"


def read(repo: Path, path: str) -> str:
    """A file of a checkout, or of a bare git directory at HEAD."""
    if (repo / path).is_file():
        return (repo / path).read_text()
    return subprocess.run(["git", "--git-dir", str(repo), "show", f"HEAD:{path}"],
                          capture_output=True, text=True, check=True).stdout


def commit(repo: Path) -> str:
    git_dir = repo / ".git" if (repo / ".git").exists() else repo
    return subprocess.run(["git", "--git-dir", str(git_dir), "rev-parse", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()


def k8s_definitions() -> dict:
    import kubernetes_validate

    base = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    data = json.loads((base / f"v{K8S_VERSION}-local-strict" / "_definitions.json").read_text())
    return data["$defs"]


# ------------------------------------------------------------------------------- Knative
FUNC = re.compile(r"^func (\w+)\((?:ctx context\.Context, )?in \*corev1\.(\w+)[^)]*\) \*corev1")
ASSIGN = re.compile(r"^\s*out\.(\w+) = (.+?)\s*$")
FLAG = re.compile(r"Features\.(\w+)")


def _mask_functions(text: str) -> dict[str, list[str]]:
    """Kubernetes type -> the body lines of its mask function."""
    out: dict[str, list[str]] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = FUNC.match(lines[i])
        if not m:
            i += 1
            continue
        body = []
        i += 1
        while i < len(lines) and lines[i] != "}":
            body.append(lines[i])
            i += 1
        out[m.group(2)] = body
    return out


def _classify(body: list[str]) -> dict[str, dict]:
    """Go field -> {"rule": allowed|gated|conditional|disallowed, "flags", "condition"}."""
    fields: dict[str, dict] = {}
    stack: list[list[str]] = []  # the conditions of each open block (an else-if chain joins)
    gates: list[str] = []        # early returns: `if <flag> == config.Disabled { return out }`
    lines = [line.strip() for line in body]
    for k, line in enumerate(lines):
        if line.startswith("if ") and line.endswith("{"):
            cond = line[3:-1].strip()
            if "== config.Disabled" in cond and k + 1 < len(lines) and \
                    lines[k + 1] == "return out":
                gates += FLAG.findall(cond)
            stack.append([cond])
            continue
        if line.startswith("} else if ") and line.endswith("{"):
            stack[-1].append(line[len("} else if "):-1].strip())
            continue
        if line == "} else {":
            stack[-1].append("else")
            continue
        if line == "}":
            if stack:
                stack.pop()
            continue
        m = ASSIGN.match(line)
        if not m or m.group(2) == "in":
            continue
        name, value = m.group(1), m.group(2)
        conds = [c for block in stack for c in block]
        if value == f"in.{name}":
            flags = sorted({f for c in conds for f in FLAG.findall(c)} | set(gates))
            rule = "gated" if flags else ("conditional" if conds else "allowed")
            entry = fields.setdefault(name, {"rule": rule})
            if rule == "gated":
                entry["flags"] = sorted(set(entry.get("flags", [])) | set(flags))
                entry["rule"] = "gated"
            elif rule == "conditional" and entry["rule"] != "gated":
                entry["condition"] = " or ".join(conds)
        elif not conds and value in ("nil", '""', "0", "false") and name not in fields:
            fields[name] = {"rule": "disallowed"}
    return fields


def _json_name(go: str, props: dict) -> str | None:
    for p in props:
        if p.lower() == go.lower():
            return p
    return None


def knative_rules(repo: Path, defs: dict) -> dict:
    masks = _mask_functions(read(repo, "pkg/apis/serving/fieldmask.go"))
    classified = {t: _classify(body) for t, body in masks.items()}
    features = read(repo, "pkg/apis/config/features.go")
    keys = dict(re.findall(r'(Feature\w+)\s*=\s*"([^"]+)"', features))
    flag_key = {field: keys.get(const, const) for const, field in
                re.findall(r'asFlag\((Feature\w+),\s*&nc\.(\w+)\)', features)}
    flag_key.update({field: key for key, field in
                     re.findall(r'as\w*Flag\("([^"]+)",\s*&nc\.(\w+)\)', features)})
    block = re.search(r"func defaultFeaturesConfig\(\) \*Features \{(.*?)\n\}", features, re.S)
    defaults = {flag_key.get(f, f): v for f, v in
                re.findall(r"(\w+):\s*(Enabled|Disabled|Allowed)", block.group(1))}

    def expand(type_name: str, props: dict, seen: tuple = ()) -> dict[str, dict]:
        rules: dict[str, dict] = {}
        for go, info in classified.get(type_name, {}).items():
            prop = _json_name(go, props)
            if prop is None and go in classified and go not in seen:  # an embedded struct
                inner = expand(go, props, seen + (go,))
                for p, r in inner.items():
                    rules.setdefault(p, {**r, **({"flags": sorted(set(r.get("flags", [])) |
                                                           set(info.get("flags", [])))}
                                                 if info.get("flags") else {})})
                continue
            if prop is None:
                continue
            r = dict(info)
            if "flags" in r:
                r["flags"] = [flag_key.get(f, f) for f in r["flags"]]
            rules[prop] = r
        return rules

    types = {}
    for t in classified:
        ref = defs.get(f"io.k8s.api.core.v1.{t}")
        if ref is None:
            continue  # embedded only (ProbeHandler, VolumeSource): expanded where used
        types[t] = expand(t, ref.get("properties", {}))
    validation = read(repo, "pkg/apis/serving/k8s_validation.go")
    sets = {name: re.findall(r'"([^"]*)"', body) for name, body in
            re.findall(r"(\w+)\s*=\s*sets\.New\((.*?)\)\n", validation, re.S)}
    return {
        "types": types,
        "feature_defaults": defaults,
        "reserved_env_vars": sets.get("reservedEnvVars", []),
        "reserved_container_names": sets.get("reservedContainerNames", []),
        "reserved_paths": sets.get("reservedPaths", []),
        "port_names": sets.get("validPortNames", []),
        "single_port": "Only a single port is allowed across all containers" in validation,
    }


# ------------------------------------------------------------------------------- KServe
def kserve_rules(repo: Path) -> dict:
    constants = read(repo, "pkg/constants/constants.go")
    consts = dict(re.findall(r'^\s*(\w+)\s+\w*Type\s*=\s*"([^"]+)"', constants, re.M))

    def listed(var: str) -> list[str]:
        body = re.search(rf"var {var} = \[\]\w+\{{(.*?)\}}", constants, re.S).group(1)
        return [consts[name] for name in re.findall(r"(\w+),", body)]

    modes = {name: value for name, value in consts.items() if name in (
        "LegacyServerless", "Knative", "LegacyRawDeployment", "Standard", "ModelMeshDeployment")}
    default = re.search(r"DefaultDeployment\s+DeploymentModeType\s*=\s*(\w+)", constants)
    api_group = re.search(r'KServeAPIGroupName\s*=\s*"([^"]+)"', constants).group(1)
    env = read(repo, "pkg/validation/env_policy.go")
    blocked = re.findall(r'"([^"]+)"', re.search(r"DefaultBlockedEnvVars = \[\]string\{(.*?)\}",
                                                 env, re.S).group(1))
    knative = [v for k, v in modes.items() if k in ("Knative", "LegacyServerless")]
    raw = [v for k, v in modes.items() if k in ("Standard", "LegacyRawDeployment")]
    validation = read(repo, "pkg/apis/serving/v1beta1/inference_service_validation.go")
    metric_consts = dict(re.findall(r'^\s*(Metric\w+)\s+ScaleMetric\s*=\s*"([^"]+)"',
                                    read(repo, "pkg/apis/serving/v1beta1/component.go"), re.M))

    def default_metric(func: str) -> str:
        body = re.search(rf"func {func}\(.*?metric := (\w+)", validation, re.S)
        return metric_consts[body.group(1)]

    default_class = re.search(r"DefaultAutoscalerClass\s*=\s*(\w+)", constants).group(1)
    return {
        "mode_annotation": f"{api_group}/deploymentMode",
        "autoscaler_class_annotation": f"{api_group}/autoscalerClass",
        "knative_modes": knative, "raw_modes": raw,
        "default_mode": modes.get(default.group(1), default.group(1)) if default else None,
        "hpa_metrics": listed("AutoscalerAllowedHPAMetricsList"),
        "kpa_metrics": listed("AutoscalerAllowedKPAMetricsList"),
        "default_hpa_metric": default_metric("validateScalingHPACompExtension"),
        "default_kpa_metric": default_metric("validateScalingKPACompExtension"),
        "default_raw_autoscaler_class": consts[default_class],
        "raw_only_fields": ["deploymentStrategy"]
        if "deploymentStrategy is only supported for raw deployment mode" in validation else [],
        "blocked_env_vars": blocked,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("knative", type=Path)
    ap.add_argument("kserve", type=Path)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("rules.json"))
    args = ap.parse_args()
    rules = {
        "description": "Knative Serving's pod-spec allow-list and KServe's mode rules, "
                       "generated by deploy/schema/generate_rules.py",
        "sources": {"knative/serving": commit(args.knative),
                    "kserve/kserve": commit(args.kserve),
                    "kubernetes schema": K8S_VERSION},
        "knative": knative_rules(args.knative, k8s_definitions()),
        "kserve": kserve_rules(args.kserve),
    }
    args.out.write_text(json.dumps(rules, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out}: {len(rules['knative']['types'])} Knative types")


if __name__ == "__main__":
    main()
