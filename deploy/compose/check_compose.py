#!/usr/bin/env python3
"""Cross-check deploy/compose/docker-compose.yml against Lumen's contract
(run by deploy/check.sh, after the file itself passed `docker compose config`
or compose-validate).

Owns what a Compose loader cannot know: the admin ports of DESIGN.md, health
checks on them, start-up order, the topics, that every LUMEN_* variable is
one the Rust code declares, that bind-mounted files exist, and that
Prometheus scrapes the services it should.

usage: check_compose.py --repo ROOT
"""
import argparse
import glob
import json
import os
import re
import sys

import yaml

ADMIN_PORTS = {"ingest": 9101, "enrich": 9102, "sink": 9103}
REQUIRED = ("kafka", "kafka-topics", "clickhouse", "ingest", "enrich", "sink", "prometheus", "grafana")
TOPICS = ("lumen.raw", "lumen.enriched", "lumen.dlq", "lumen.shares")


def rust_env_vars(repo):
    """Every `env = "LUMEN_..."` declared by a clap flag in the workspace."""
    names = set()
    for path in glob.glob(os.path.join(repo, "*/src/**/*.rs"), recursive=True):
        with open(path, encoding="utf-8") as f:
            names.update(re.findall(r'env\s*=\s*"(LUMEN_[A-Z0-9_]+)"', f.read()))
    return names


def env_of(service):
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {k: ("" if v is None else str(v)) for k, v in env.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", required=True)
    repo = ap.parse_args().repo
    base = os.path.join(repo, "deploy/compose")
    with open(os.path.join(base, "docker-compose.yml")) as f:
        doc = yaml.safe_load(f)
    services = doc.get("services", {})
    errors = []
    known_env = rust_env_vars(repo)

    for name in REQUIRED:
        if name not in services:
            errors.append(f"service {name} is missing")

    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            target = services.get(dep)
            condition = cond.get("condition") if isinstance(cond, dict) else "service_started"
            if target is None:
                errors.append(f"{name} depends on unknown service {dep}")
            elif condition == "service_healthy" and "healthcheck" not in target:
                errors.append(f"{name} waits for {dep} to be healthy, but {dep} has no healthcheck")
            elif condition == "service_completed_successfully" and str(target.get("restart", "no")) != "no":
                errors.append(f"{name} waits for {dep} to complete, but {dep} restarts")
        for volume in svc.get("volumes", []):
            src = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source", "")
            if src.startswith(("./", "../", "/")):
                if not os.path.exists(os.path.normpath(os.path.join(base, src))):
                    errors.append(f"{name}: bind-mounted {src} does not exist")
        for var in env_of(svc):
            if var.startswith("LUMEN_") and var not in known_env:
                errors.append(f"{name}: {var} is not a flag variable of any Lumen binary")

    for name, port in ADMIN_PORTS.items():
        svc = services.get(name)
        if svc is None:
            continue
        env = env_of(svc)
        if svc.get("command", [None])[0] != f"lumen-{name}":
            errors.append(f"{name}: command should start lumen-{name}")
        if not env.get("LUMEN_ADMIN_ADDR", "").endswith(f":{port}"):
            errors.append(f"{name}: LUMEN_ADMIN_ADDR should listen on port {port}")
        test = " ".join(svc.get("healthcheck", {}).get("test", []))
        if f"/{port}" not in test or "/readyz" not in test:
            errors.append(f"{name}: healthcheck should ask /readyz on admin port {port}")
        if "kafka-topics" not in (svc.get("depends_on") or {}):
            errors.append(f"{name}: should wait for kafka-topics")
        build = svc.get("build", {})
        dockerfile = os.path.join(base, build.get("context", "."), build.get("dockerfile", "Dockerfile"))
        if not os.path.exists(dockerfile):
            errors.append(f"{name}: build Dockerfile {dockerfile} does not exist")
        if "LUMEN_KAFKA_BROKERS" not in env:
            errors.append(f"{name}: LUMEN_KAFKA_BROKERS is not set")

    ingest = services.get("ingest", {})
    ingest_env = env_of(ingest)
    sites_target = ingest_env.get("LUMEN_SITES_FILE")
    mounts = {v.split(":")[1]: v.split(":")[0] for v in ingest.get("volumes", []) if isinstance(v, str)}
    if sites_target not in mounts:
        errors.append("ingest: LUMEN_SITES_FILE is not a mounted file")
    else:
        with open(os.path.normpath(os.path.join(base, mounts[sites_target]))) as f:
            if "sites" not in json.load(f):
                errors.append("ingest: the mounted sites file has no `sites`")
    for var in ("LUMEN_VISITOR_SECRET", "LUMEN_LISTEN_ADDR"):
        if var not in ingest_env:
            errors.append(f"ingest: {var} is not set")
    if "LUMEN_CLICKHOUSE_URL" not in env_of(services.get("sink", {})):
        errors.append("sink: LUMEN_CLICKHOUSE_URL is not set")
    if "clickhouse" not in (services.get("sink", {}).get("depends_on") or {}):
        errors.append("sink: should wait for clickhouse")

    script = "\n".join(services.get("kafka-topics", {}).get("command", []))
    for topic in TOPICS:
        if topic not in script:
            errors.append(f"kafka-topics does not create {topic}")
    if "--partitions 3" not in script:
        errors.append("kafka-topics should create 3 partitions")
    if not re.search(r"lumen\.shares.*cleanup\.policy=compact", script):
        errors.append("kafka-topics should create lumen.shares compacted")

    with open(os.path.join(repo, "deploy/prometheus/prometheus.compose.yml")) as f:
        prom = yaml.safe_load(f)
    targets = {t for job in prom["scrape_configs"] for sc in job.get("static_configs", []) for t in sc["targets"]}
    for name, port in ADMIN_PORTS.items():
        if f"{name}:{port}" not in targets:
            errors.append(f"prometheus.compose.yml does not scrape {name}:{port}")
    prom_mounts = " ".join(services.get("prometheus", {}).get("volumes", []))
    if "prometheus.compose.yml" not in prom_mounts or "rules" not in prom_mounts:
        errors.append("prometheus should mount prometheus.compose.yml and the rules")
    graf_mounts = " ".join(services.get("grafana", {}).get("volumes", []))
    if "grafana/provisioning" not in graf_mounts or "grafana/dashboards" not in graf_mounts:
        errors.append("grafana should mount the provisioning and the dashboards")

    for e in errors:
        print(f"compose: {e}", file=sys.stderr)
    if errors:
        return 1
    print(f"compose: {len(services)} services agree with the contract (ports, health, order, topics, variables, mounts)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
