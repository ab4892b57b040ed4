#!/usr/bin/env python3
"""Validate the rendered Kubernetes manifests of deploy/k8s (run by deploy/check.sh).

Input: the output of `kustomize build deploy/k8s` (a YAML stream) on stdin or
in a file. Every object is validated against the Kubernetes OpenAPI schemas
bundled in the kubernetes-validate wheel, in strict mode (unknown fields are
errors), for the oldest and the newest Kubernetes version Lumen supports; then
Lumen's contract is checked: admin ports and probes, resources, non-root,
selectors of Services, PDBs and the HPA, secret references, the sites file,
and that every LUMEN_* variable is declared by the Rust code.

usage: check_manifests.py --repo ROOT RENDERED.yaml
"""
import argparse
import glob
import json
import os
import re
import sys

import kubernetes_validate
import yaml

K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
ADMIN_PORTS = {"lumen-ingest": 9101, "lumen-enrich": 9102, "lumen-sink": 9103}


def rust_env_vars(repo):
    """Every `env = "LUMEN_..."` declared by a clap flag in the workspace."""
    names = set()
    for path in glob.glob(os.path.join(repo, "*/src/**/*.rs"), recursive=True):
        with open(path, encoding="utf-8") as f:
            names.update(re.findall(r'env\s*=\s*"(LUMEN_[A-Z0-9_]+)"', f.read()))
    return names


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", required=True)
    ap.add_argument("rendered")
    args = ap.parse_args()
    with open(args.rendered) as f:
        objs = [o for o in yaml.safe_load_all(f) if o]
    errors = []

    for obj in objs:
        name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = "/".join(str(p) for p in e.path)
                errors.append(f"{name}: Kubernetes {version}: {path}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError as e:
                errors.append(f"{name}: Kubernetes {version}: no schema ({e})")

    by_kind = {}
    for obj in objs:
        by_kind.setdefault(obj["kind"], {})[obj["metadata"]["name"]] = obj
    deployments = by_kind.get("Deployment", {})
    configmaps = by_kind.get("ConfigMap", {})
    known_env = rust_env_vars(args.repo)
    namespaces = {o["metadata"].get("namespace") for o in objs if o["kind"] != "Namespace"}
    if namespaces != {"lumen"}:
        errors.append(f"objects should all be in namespace lumen, found {namespaces}")

    for dep_name, port in ADMIN_PORTS.items():
        dep = deployments.get(dep_name)
        if dep is None:
            errors.append(f"Deployment/{dep_name} is missing")
            continue
        where = f"Deployment/{dep_name}"
        pod = dep["spec"]["template"]
        if not matches(dep["spec"]["selector"]["matchLabels"], pod["metadata"]["labels"]):
            errors.append(f"{where}: selector does not match its pod labels")
        if pod["metadata"]["labels"].get("app.kubernetes.io/part-of") != "lumen":
            errors.append(f"{where}: pods lack app.kubernetes.io/part-of=lumen (Prometheus discovery)")
        spec = pod["spec"]
        if not spec.get("securityContext", {}).get("runAsNonRoot"):
            errors.append(f"{where}: pods should run as non-root")
        container = spec["containers"][0]
        if container.get("command", [None])[0] != dep_name:
            errors.append(f"{where}: command should start {dep_name}")
        ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
        if ports.get("admin") != port:
            errors.append(f"{where}: container port `admin` should be {port}")
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = container.get(probe, {}).get("httpGet", {})
            if get.get("path") != path or get.get("port") not in ("admin", port):
                errors.append(f"{where}: {probe} should GET {path} on the admin port")
        res = container.get("resources", {})
        if not res.get("requests", {}).get("cpu") or not res.get("requests", {}).get("memory") \
                or not res.get("limits", {}).get("memory"):
            errors.append(f"{where}: needs cpu and memory requests and a memory limit")
        env = {e["name"]: e for e in container.get("env", [])}
        for ref in container.get("envFrom", []):
            cm = ref.get("configMapRef", {}).get("name")
            if cm not in configmaps:
                errors.append(f"{where}: envFrom refers to missing ConfigMap {cm}")
            else:
                env.update({k: {"name": k, "value": v} for k, v in configmaps[cm].get("data", {}).items()})
        if not env.get("LUMEN_ADMIN_ADDR", {}).get("value", "").endswith(f":{port}"):
            errors.append(f"{where}: LUMEN_ADMIN_ADDR should listen on port {port}")
        for var in env:
            if var.startswith("LUMEN_") and var not in known_env:
                errors.append(f"{where}: {var} is not a flag variable of any Lumen binary")
        if "LUMEN_KAFKA_BROKERS" not in env:
            errors.append(f"{where}: LUMEN_KAFKA_BROKERS is not set")
        for vol in spec.get("volumes", []):
            cm = vol.get("configMap", {}).get("name")
            if cm and cm not in configmaps:
                errors.append(f"{where}: volume {vol['name']} refers to missing ConfigMap {cm}")

        if dep_name == "lumen-ingest":
            secret = env.get("LUMEN_VISITOR_SECRET", {}).get("valueFrom", {}).get("secretKeyRef")
            if not secret:
                errors.append(f"{where}: LUMEN_VISITOR_SECRET must come from a Secret")
            sites_file = env.get("LUMEN_SITES_FILE", {}).get("value", "")
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            mount = next((m for m in mounts if sites_file.startswith(m.rstrip("/") + "/")), None)
            vols = {v["name"]: v for v in spec.get("volumes", [])}
            if mount is None:
                errors.append(f"{where}: LUMEN_SITES_FILE {sites_file} is not on a mounted volume")
            else:
                cm = configmaps.get(vols[mounts[mount]].get("configMap", {}).get("name"), {})
                key = os.path.basename(sites_file)
                if key not in cm.get("data", {}):
                    errors.append(f"{where}: the sites ConfigMap has no key {key}")
                else:
                    check_sites(json.loads(cm["data"][key]), args.repo, errors)
        if dep_name == "lumen-sink" and "LUMEN_CLICKHOUSE_URL" not in env:
            errors.append(f"{where}: LUMEN_CLICKHOUSE_URL is not set")

    for svc in by_kind.get("Service", {}).values():
        pods = [d for d in deployments.values()
                if matches(svc["spec"].get("selector"), d["spec"]["template"]["metadata"]["labels"])]
        if not pods:
            errors.append(f"Service/{svc['metadata']['name']}: selector matches no Deployment")
            continue
        names = {p.get("name") for c in pods[0]["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
        for port in svc["spec"]["ports"]:
            if isinstance(port.get("targetPort"), str) and port["targetPort"] not in names:
                errors.append(f"Service/{svc['metadata']['name']}: targetPort {port['targetPort']} is not a container port")
    for pdb in by_kind.get("PodDisruptionBudget", {}).values():
        sel = pdb["spec"]["selector"]["matchLabels"]
        if not any(matches(sel, d["spec"]["template"]["metadata"]["labels"]) for d in deployments.values()):
            errors.append(f"PodDisruptionBudget/{pdb['metadata']['name']}: selector matches no Deployment")
    pdb_targets = {n for n, d in deployments.items() for p in by_kind.get("PodDisruptionBudget", {}).values()
                   if matches(p["spec"]["selector"]["matchLabels"], d["spec"]["template"]["metadata"]["labels"])}
    for name in ADMIN_PORTS:
        if name not in pdb_targets:
            errors.append(f"Deployment/{name} has no PodDisruptionBudget")
    hpas = by_kind.get("HorizontalPodAutoscaler", {}).values()
    if not any(h["spec"]["scaleTargetRef"]["name"] == "lumen-ingest" for h in hpas):
        errors.append("no HorizontalPodAutoscaler for lumen-ingest")
    for h in hpas:
        if h["spec"]["scaleTargetRef"]["name"] not in deployments:
            errors.append(f"HorizontalPodAutoscaler/{h['metadata']['name']}: target is not a Deployment here")

    for e in errors:
        print(f"k8s: {e}", file=sys.stderr)
    if errors:
        return 1
    print(f"k8s: {len(objs)} objects valid (strict) for Kubernetes {' and '.join(K8S_VERSIONS)}, contract holds")
    return 0


def check_sites(sites, repo, errors):
    """Same shape as ingest/sites.example.json: sites -> {origins, hostnames}."""
    with open(os.path.join(repo, "ingest/sites.example.json")) as f:
        example = json.load(f)
    shape = {key for site in example["sites"].values() for key in site}
    if not isinstance(sites.get("sites"), dict) or not sites["sites"]:
        errors.append("deploy/k8s/sites.json: no `sites` object")
        return
    for site_id, site in sites["sites"].items():
        if set(site) != shape:
            errors.append(f"deploy/k8s/sites.json: site {site_id} has keys {sorted(site)}, "
                          f"ingest/sites.example.json has {sorted(shape)}")


if __name__ == "__main__":
    sys.exit(main())
