#!/usr/bin/env python3
"""What promtool does not check in deploy/prometheus (run by deploy/check.sh).

- every alert has a `severity` label (warning|critical), a summary, a
  description and a runbook anchor that exists in README.md;
- every alert has a unit test in tests/ where it fires and one where it is
  expected quiet;
- every `lumen_*` metric the rules use is listed in README.md's Metrics table;
- every listed metric appears in the Rust sources of its binary
  (as the string literal `"lumen_<binary>_..."` under <binary>/src). The services are written in
  parallel with these files, so a missing one is reported as pending, and is
  an error only with --strict (LUMEN_DEPLOY_STRICT=1 in deploy/check.sh).

usage: check_rules.py --repo ROOT [--strict]
       check_rules.py --repo ROOT --k8s-config prometheus.k8s.yml [--promtool PATH]
"""
import argparse
import glob
import os
import re
import subprocess
import sys
import tempfile

import yaml


def anchors(markdown):
    """GitHub-style anchors of the README's headings."""
    out = set()
    for line in markdown.splitlines():
        m = re.match(r"#+\s+(.*)", line)
        if m:
            out.add(re.sub(r"[^a-z0-9_ -]", "", m.group(1).strip().lower()).replace(" ", "-"))
    return out


def listed_metrics(markdown):
    section = markdown.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `(lumen_[a-z0-9_]+)`", section, re.M)


K8S_SD_ROLES = ("node", "service", "pod", "endpoints", "endpointslice", "ingress")
K8S_SD_KEYS = {"role", "namespaces", "selectors", "api_server", "kubeconfig_file", "attach_metadata"}


def check_k8s_config(path, promtool):
    """promtool check config for a file using kubernetes_sd_configs.

    Debian's promtool is built without Kubernetes discovery and rejects the
    block, so it checks a copy where each kubernetes_sd_configs is replaced by
    an empty file_sd_configs (everything else, relabelling included, is
    checked by promtool); the discovery block itself is checked here.
    """
    errors = []
    with open(path) as f:
        cfg = yaml.safe_load(f)
    for job in cfg.get("scrape_configs", []):
        for sd in job.pop("kubernetes_sd_configs", []):
            job.setdefault("file_sd_configs", []).append({"files": ["/nonexistent/*.json"]})
            if sd.get("role") not in K8S_SD_ROLES:
                errors.append(f"{path}: job {job['job_name']}: kubernetes_sd_configs role {sd.get('role')!r}")
            if set(sd) - K8S_SD_KEYS:
                errors.append(f"{path}: job {job['job_name']}: unknown kubernetes_sd_configs keys {sorted(set(sd) - K8S_SD_KEYS)}")
            names = sd.get("namespaces", {}).get("names", [])
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                errors.append(f"{path}: job {job['job_name']}: namespaces.names must be a list of names")
    base = os.path.dirname(os.path.abspath(path))
    cfg["rule_files"] = [os.path.join(base, r) for r in cfg.get("rule_files", [])]
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        yaml.safe_dump(cfg, f)
        copy = f.name
    try:
        res = subprocess.run([promtool, "check", "config", copy], capture_output=True, text=True)
        if res.returncode != 0:
            errors.append(f"{path} (discovery swapped for file_sd): {(res.stdout + res.stderr).strip()}")
    finally:
        os.unlink(copy)
    return errors


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", required=True)
    ap.add_argument("--strict", action="store_true")
    ap.add_argument("--k8s-config", help="check this kubernetes_sd config (see check_k8s_config) and exit")
    ap.add_argument("--promtool", default="promtool")
    args = ap.parse_args()
    if args.k8s_config:
        errors = check_k8s_config(args.k8s_config, args.promtool)
        for e in errors:
            print(f"prometheus: {e}", file=sys.stderr)
        if not errors:
            print(f"prometheus: {args.k8s_config}: Kubernetes discovery and the rest of the config are valid")
        return 1 if errors else 0
    base = os.path.join(args.repo, "deploy/prometheus")
    with open(os.path.join(base, "README.md")) as f:
        readme = f.read()
    heads, metrics = anchors(readme), listed_metrics(readme)
    errors, pending = [], []

    alerts = []
    for path in sorted(glob.glob(os.path.join(base, "rules/*.yml"))):
        with open(path) as f:
            for group in yaml.safe_load(f)["groups"]:
                for rule in group["rules"]:
                    for name in set(re.findall(r"\blumen_[a-z0-9_]+", rule["expr"])):
                        if re.sub(r"_(bucket|sum|count)$", "", name) not in metrics and name not in metrics:
                            errors.append(f"{rule.get('alert') or rule.get('record')}: metric {name} is not listed in README.md")
                    if "alert" not in rule:
                        continue
                    alerts.append(rule["alert"])
                    where = f"alert {rule['alert']}"
                    if rule.get("labels", {}).get("severity") not in ("warning", "critical"):
                        errors.append(f"{where}: severity must be warning or critical")
                    ann = rule.get("annotations", {})
                    for key in ("summary", "description", "runbook"):
                        if not ann.get(key):
                            errors.append(f"{where}: no {key} annotation")
                    anchor = ann.get("runbook", "").partition("#")[2]
                    if ann.get("runbook") and anchor not in heads:
                        errors.append(f"{where}: runbook anchor #{anchor} is not a heading of README.md")

    fires, quiet = set(), set()
    for path in sorted(glob.glob(os.path.join(base, "tests/*.yml"))):
        with open(path) as f:
            for test in yaml.safe_load(f).get("tests", []):
                for case in test.get("alert_rule_test", []):
                    (fires if case.get("exp_alerts") else quiet).add(case["alertname"])
    for alert in alerts:
        if alert not in fires:
            errors.append(f"alert {alert}: no unit test where it fires")
        if alert not in quiet:
            errors.append(f"alert {alert}: no unit test where it stays quiet")

    for metric in metrics:
        binary = metric.split("_")[1]
        found = False
        for rs in glob.glob(os.path.join(args.repo, binary, "src/**/*.rs"), recursive=True):
            with open(rs, encoding="utf-8") as f:
                if f'"{metric}"' in f.read():
                    found = True
                    break
        if not found:
            pending.append(metric)

    for e in errors:
        print(f"prometheus: {e}", file=sys.stderr)
    if pending:
        level = "error" if args.strict else "pending"
        print(f"prometheus: {level}: {len(pending)} listed metrics not (yet) in the Rust sources: {', '.join(pending)}",
              file=sys.stderr)
    if errors or (pending and args.strict):
        return 1
    print(f"prometheus: {len(alerts)} alerts have severity, runbook and firing/quiet tests; "
          f"{len(metrics) - len(pending)}/{len(metrics)} listed metrics found in the code")
    return 0


if __name__ == "__main__":
    sys.exit(main())
