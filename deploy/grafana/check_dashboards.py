#!/usr/bin/env python3
"""Validate Lumen's Grafana dashboards and provisioning (run by deploy/check.sh).

Owns: dashboard structure, data-source references, PromQL syntax (through
promtool), metric names (against deploy/prometheus/README.md) and ClickHouse
queries (run on a real ClickHouse engine, the chdb-core wheel, over the
schema of schemas/migrations/ and a few sample events). Does not start
Grafana: plugin-side rendering is not checked.

usage: check_dashboards.py --repo ROOT --promtool PATH [--no-clickhouse]
Exit status 1 with one line per problem on stderr.
"""
import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

import yaml

PROM_TYPE = "prometheus"
CH_TYPE = "grafana-clickhouse-datasource"

# Grafana's Prometheus variables, replaced by plain durations for promtool.
PROM_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}

SAMPLE_SITE = "example.com"
# Columns left out get their type's default. received_at is "now", inside
# the time filter below. Two visits share token tokA (minted by the first).
SAMPLE_EVENTS = """
INSERT INTO lumen.events (event_id, site_id, kind, received_at, url, user_agent, visitor_id,
    minted_token, landing_token, share_token, share_method, channel, channel_source,
    attribution, confidence, rule, in_app, is_bot, preview_app, token_status,
    share_age_seconds, landing_share_method, device_type) VALUES
(generateUUIDv4(), 'example.com', 'pageview', now64(3), 'https://example.com/news/a', 'ua', 'v1',
    'tokA', NULL, NULL, NULL, 'direct', '', 'none', 'probable', 'direct.homepage', '', false, '', 'absent',
    NULL, NULL, 'desktop'),
(generateUUIDv4(), 'example.com', 'pageview', now64(3), 'https://example.com/news/a', 'ua', 'v2',
    'tokB', 'tokA', NULL, NULL, 'dark_social', 'whatsapp', 'in_app', 'certain', 'dark.in_app', 'WhatsApp', false, '', 'address_bar',
    600, 'address_bar', 'mobile'),
(generateUUIDv4(), 'example.com', 'pageview', now64(3), 'https://example.com/news/b', 'ua', 'v3',
    'tokC', NULL, NULL, NULL, 'social', 'facebook', 'referrer', 'certain', 'social.referrer', '', false, '', 'absent',
    NULL, NULL, 'mobile'),
(generateUUIDv4(), 'example.com', 'share', now64(3), 'https://example.com/news/a', 'ua', 'v2',
    NULL, NULL, 'tokB', 'copy', 'dark_social', '', 'none', 'probable', 'share', '', false, '', 'absent',
    NULL, NULL, 'mobile'),
(generateUUIDv4(), 'example.com', 'pageview', now64(3), 'https://example.com/news/a', 'WhatsApp/2.23', 'bot1',
    NULL, NULL, NULL, NULL, 'dark_social', 'whatsapp', 'in_app', 'certain', 'bot.preview', '', true, 'whatsapp', 'absent',
    NULL, NULL, 'bot')
"""


def expand_clickhouse_macros(sql):
    """The grafana-clickhouse-datasource macros and our ${site} variable."""
    sql = re.sub(r"\$__timeFilter\(\s*([\w.]+)\s*\)",
                 r"(\1 >= now() - INTERVAL 1 DAY AND \1 <= now() + INTERVAL 1 HOUR)", sql)
    sql = re.sub(r"\$__timeInterval\(\s*([\w.]+)\s*\)",
                 r"toStartOfInterval(toDateTime(\1), INTERVAL 60 second)", sql)
    sql = sql.replace("${site}", SAMPLE_SITE)
    return sql


def walk_panels(panels):
    for panel in panels:
        yield panel
        yield from walk_panels(panel.get("panels", []))


class Checker:
    def __init__(self, repo):
        self.repo = repo
        self.errors = []

    def error(self, where, msg):
        self.errors.append(f"{where}: {msg}")

    def datasources(self):
        path = os.path.join(self.repo, "deploy/grafana/provisioning/datasources/lumen.yml")
        with open(path) as f:
            doc = yaml.safe_load(f)
        uids = {}
        for ds in doc.get("datasources", []):
            uids[ds["uid"]] = ds["type"]
        for needed in (PROM_TYPE, CH_TYPE):
            if needed not in uids.values():
                self.error(path, f"no data source of type {needed}")
        path = os.path.join(self.repo, "deploy/grafana/provisioning/dashboards/lumen.yml")
        with open(path) as f:
            doc = yaml.safe_load(f)
        if not doc.get("providers"):
            self.error(path, "no dashboard provider")
        return uids

    def dashboards(self, uids):
        """Returns (promql, clickhouse_sql) lists of (where, text)."""
        promql, sql = [], []
        seen_uids = set()
        files = sorted(glob.glob(os.path.join(self.repo, "deploy/grafana/dashboards/*.json")))
        if len(files) < 2:
            self.error("deploy/grafana/dashboards", "expected the SRE and the analysts dashboards")
        for path in files:
            rel = os.path.relpath(path, self.repo)
            try:
                with open(path) as f:
                    dash = json.load(f)
            except json.JSONDecodeError as e:
                self.error(rel, f"invalid JSON: {e}")
                continue
            for key in ("uid", "title", "panels", "schemaVersion"):
                if key not in dash:
                    self.error(rel, f"missing {key}")
            if dash.get("uid") in seen_uids:
                self.error(rel, f"dashboard uid {dash.get('uid')} used twice")
            seen_uids.add(dash.get("uid"))
            for var in dash.get("templating", {}).get("list", []):
                ds = var.get("datasource")
                if isinstance(ds, dict) and ds.get("uid") not in uids:
                    self.error(rel, f"variable {var.get('name')}: unknown data source {ds}")
                if isinstance(ds, dict) and uids.get(ds.get("uid")) == CH_TYPE:
                    sql.append((f"{rel} variable {var.get('name')}", var.get("query", "")))
            ids = set()
            for panel in walk_panels(dash.get("panels", [])):
                where = f"{rel} panel {panel.get('id')} {panel.get('title')!r}"
                if panel.get("id") in ids:
                    self.error(where, "duplicate panel id")
                ids.add(panel.get("id"))
                pos = panel.get("gridPos", {})
                if not pos or pos.get("x", 0) + pos.get("w", 0) > 24:
                    self.error(where, f"bad gridPos {pos}")
                if panel.get("type") == "row":
                    continue
                ds = panel.get("datasource", {})
                if ds.get("uid") not in uids:
                    self.error(where, f"unknown data source {ds}")
                if panel.get("type") != "alertlist" and not panel.get("targets"):
                    self.error(where, "no targets")
                for target in panel.get("targets", []):
                    tds = target.get("datasource", ds)
                    kind = uids.get(tds.get("uid"))
                    twhere = f"{where} target {target.get('refId')}"
                    if kind is None:
                        self.error(twhere, f"unknown data source {tds}")
                    elif kind == PROM_TYPE:
                        if not target.get("expr"):
                            self.error(twhere, "empty expr")
                        promql.append((twhere, target.get("expr", "")))
                    elif kind == CH_TYPE:
                        if target.get("editorType") != "sql" or not target.get("rawSql"):
                            self.error(twhere, "ClickHouse targets must be editorType sql with rawSql")
                        if target.get("queryType") not in ("table", "timeSeries"):
                            self.error(twhere, f"queryType {target.get('queryType')!r}")
                        sql.append((twhere, target.get("rawSql", "")))
        return promql, sql

    def check_promql(self, promql, promtool, known_metrics):
        rules, by_record = [], {}
        for i, (where, expr) in enumerate(promql):
            by_record[f"dashboard:expr_{i}"] = (where, expr)
            text = expr
            for var, value in PROM_VARS.items():
                text = text.replace(var, value)
            if "$" in text:
                self.error(where, f"unknown Grafana variable in {expr!r}")
                continue
            rules.append({"record": f"dashboard:expr_{i}", "expr": text})
            for name in set(re.findall(r"\blumen_[a-z0-9_]+", text)):
                base = re.sub(r"_(bucket|sum|count)$", "", name)
                if name not in known_metrics and base not in known_metrics:
                    self.error(where, f"metric {name} is not listed in deploy/prometheus/README.md")
        with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
            yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}, f)
            path = f.name
        try:
            res = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True)
            if res.returncode != 0:
                out = (res.stdout + res.stderr).strip()
                for line in out.splitlines():
                    m = re.search(r'"(dashboard:expr_\d+)": (.*)', line)
                    if m:
                        where, expr = by_record[m.group(1)]
                        self.error(where, f"{m.group(2)} in {expr!r}")
                if not any("dashboard:expr_" in line for line in out.splitlines()):
                    self.error("dashboard PromQL", out)
        finally:
            os.unlink(path)
        return len(rules)

    def check_clickhouse(self, sql):
        from chdb import session  # the venv of deploy/check.sh has chdb-core

        with tempfile.TemporaryDirectory() as tmp:
            s = session.Session(tmp)
            try:
                s.query("CREATE DATABASE IF NOT EXISTS lumen")
                for mig in sorted(glob.glob(os.path.join(self.repo, "schemas/migrations/*.sql"))):
                    with open(mig) as f:
                        text = f.read().replace("{db}", "lumen")
                    for stmt in split_sql(text):
                        try:
                            s.query(stmt)
                        except Exception as e:  # noqa: BLE001 - chdb raises its own error type
                            self.error(os.path.relpath(mig, self.repo), f"migration failed: {e}")
                            return 0
                s.query(SAMPLE_EVENTS)
                for where, query in sql:
                    expanded = expand_clickhouse_macros(query)
                    if "$" in expanded:
                        self.error(where, f"unknown macro or variable in {query!r}")
                        continue
                    try:
                        out = json.loads(s.query(expanded, "JSONCompact").bytes())
                    except Exception as e:  # noqa: BLE001
                        self.error(where, f"ClickHouse refused the query: {e}")
                        continue
                    if out.get("rows", 0) == 0:
                        self.error(where, "no rows on the sample events (the query cannot show anything)")
            finally:
                s.close()
        return len(sql)


def split_sql(text):
    """Statements of a migration file: ';'-separated, comment lines dropped."""
    lines = [line for line in text.splitlines() if not line.strip().startswith("--")]
    return [stmt.strip() for stmt in "\n".join(lines).split(";") if stmt.strip()]


def known_metrics(repo):
    path = os.path.join(repo, "deploy/prometheus/README.md")
    with open(path) as f:
        text = f.read()
    section = text.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(lumen_[a-z0-9_]+)`", section, re.M))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", required=True)
    ap.add_argument("--promtool", required=True)
    ap.add_argument("--no-clickhouse", action="store_true")
    args = ap.parse_args()
    c = Checker(args.repo)
    uids = c.datasources()
    promql, sql = c.dashboards(uids)
    n_prom = c.check_promql(promql, args.promtool, known_metrics(args.repo) | {"up"})
    n_sql = 0 if args.no_clickhouse else c.check_clickhouse(sql)
    for e in c.errors:
        print(f"grafana: {e}", file=sys.stderr)
    if c.errors:
        return 1
    print(f"grafana: {n_prom} PromQL expressions parse, {n_sql} ClickHouse queries run on the migrated schema")
    return 0


if __name__ == "__main__":
    sys.exit(main())
