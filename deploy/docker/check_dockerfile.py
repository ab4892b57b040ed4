#!/usr/bin/env python3
"""Check deploy/docker/Dockerfile against the repository (run by deploy/check.sh).

No Docker engine is needed: the file is parsed with BuildKit's own parser (the
`dockerfile` wheel) and its promises are checked against the tree it builds:
stages and COPY --from, sources present and not filtered out by
Dockerfile.dockerignore, `include_str!`/`include_bytes!` targets not filtered
out either, the cargo packages and binaries, the tracker's npm scripts, the
runtime base image and a non-root user. hadolint runs separately.

usage: check_dockerfile.py --repo ROOT
"""
import argparse
import fnmatch
import glob
import json
import os
import re
import sys
import tomllib

import dockerfile

BINARIES = ("lumen-ingest", "lumen-enrich", "lumen-sink")
RUNTIME_BASE = "debian:bookworm-slim"
BUILDER_PACKAGES = ("build-essential", "perl", "python3", "zlib1g-dev")


def ignore_patterns(path):
    pats = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                pats.append(line.rstrip("/"))
    return pats


def ignored(rel, patterns):
    """Docker's matching, simplified: a path is out if it or a parent matches."""
    parts = rel.split("/")
    for i in range(1, len(parts) + 1):
        prefix = "/".join(parts[:i])
        for pat in patterns:
            if pat.startswith("**/"):
                if fnmatch.fnmatch(parts[i - 1], pat[3:]):
                    return True
            elif fnmatch.fnmatch(prefix, pat):
                return True
    return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", required=True)
    repo = ap.parse_args().repo
    errors = []
    df_path = os.path.join(repo, "deploy/docker/Dockerfile")
    try:
        cmds = dockerfile.parse_file(df_path)
    except dockerfile.GoParseError as e:
        print(f"docker: Dockerfile does not parse: {e}", file=sys.stderr)
        return 1
    patterns = ignore_patterns(os.path.join(repo, "deploy/docker/Dockerfile.dockerignore"))

    stages, current, froms = [], None, []
    runs, copies, users = {}, [], {}
    for c in cmds:
        if c.cmd == "FROM":
            image = c.value[0]
            name = c.value[2] if len(c.value) == 3 and c.value[1].upper() == "AS" else None
            if ":" not in image or image.endswith(":latest"):
                errors.append(f"line {c.start_line}: base image {image} is not pinned to a tag")
            current = name or str(len(stages))
            stages.append(current)
            froms.append(image)
            runs[current] = []
        elif c.cmd == "RUN":
            runs[current].append(" ".join(c.value))
        elif c.cmd in ("COPY", "ADD"):
            src_from = [f.split("=", 1)[1] for f in c.flags if f.startswith("--from=")]
            copies.append((c.start_line, current, src_from[0] if src_from else None, c.value[:-1]))
        elif c.cmd == "USER":
            users[current] = c.value[0]

    if froms and froms[-1] != RUNTIME_BASE:
        errors.append(f"final stage is {froms[-1]}, expected {RUNTIME_BASE}")
    final = stages[-1] if stages else None
    user = users.get(final, "root")
    if user.split(":")[0] in ("root", "0"):
        errors.append("final stage runs as root: add a non-root USER")

    for line, stage, src_stage, sources in copies:
        if src_stage is not None:
            if src_stage not in stages[: stages.index(stage)]:
                errors.append(f"line {line}: COPY --from={src_stage} is not an earlier stage")
            continue
        for src in sources:
            src = src.rstrip("/") or "."
            if src == ".":
                continue
            if not glob.glob(os.path.join(repo, src)):
                errors.append(f"line {line}: COPY source {src} does not exist in the repository")
            elif ignored(src, patterns):
                errors.append(f"line {line}: COPY source {src} is excluded by Dockerfile.dockerignore")

    # Cargo: the packages built exist, have a binary of the same name, and
    # every file a crate embeds at compile time survives the context filter.
    all_runs = "\n".join(r for rs in runs.values() for r in rs)
    cargo = re.search(r"cargo build([^&;]*)", all_runs)
    cargo_args = cargo.group(1) if cargo else ""
    built = re.findall(r"-p\s+(\S+)", cargo_args)
    if sorted(built) != sorted(BINARIES) or "--locked" not in cargo_args or "--release" not in cargo_args:
        errors.append(f"cargo build must be --release --locked -p {' -p '.join(BINARIES)}; found -p {built}")
    with open(os.path.join(repo, "Cargo.toml"), "rb") as f:
        members = tomllib.load(f)["workspace"]["members"]
    bins = set()
    for member in members:
        with open(os.path.join(repo, member, "Cargo.toml"), "rb") as f:
            manifest = tomllib.load(f)
        bins.update(b["name"] for b in manifest.get("bin", []))
        if ignored(member, patterns):
            errors.append(f"workspace member {member} is excluded by Dockerfile.dockerignore")
    for binary in BINARIES:
        if binary not in bins:
            errors.append(f"no workspace crate declares the binary {binary}")
        if f"target/release/{binary}" not in all_runs:
            errors.append(f"the rust stage does not copy out target/release/{binary}")
    for member in members:
        for rs in glob.glob(os.path.join(repo, member, "**/*.rs"), recursive=True):
            with open(rs, encoding="utf-8") as f:
                text = f.read()
            for lit in re.findall(r'include_(?:str|bytes)!\(\s*"([^"]+)"', text):
                target = os.path.relpath(os.path.normpath(os.path.join(os.path.dirname(rs), lit)), repo)
                if ignored(target, patterns):
                    errors.append(f"{os.path.relpath(rs, repo)} embeds {target}, excluded by Dockerfile.dockerignore")

    builder = next((rs for rs in runs.values() if any("cargo build" in r for r in rs)), [])
    for pkg in BUILDER_PACKAGES:
        if not any(re.search(rf"\b{re.escape(pkg)}\b", r) for r in builder):
            errors.append(f"the rust stage does not install {pkg} (librdkafka's vendored build needs it)")

    # Tracker: npm ci + npm run build, and the script builds what is copied.
    with open(os.path.join(repo, "tracker/package.json")) as f:
        scripts = json.load(f).get("scripts", {})
    tracker_runs = "\n".join(r for rs in runs.values() for r in rs if "npm" in r)
    if "npm ci" not in tracker_runs or "npm run build" not in tracker_runs:
        errors.append("the tracker stage must run `npm ci` and `npm run build`")
    if "dist/t.js" not in scripts.get("build", ""):
        errors.append("tracker/package.json's build script does not write dist/t.js")
    if not os.path.exists(os.path.join(repo, "tracker/package-lock.json")):
        errors.append("tracker/package-lock.json is missing (npm ci needs it)")

    for e in errors:
        print(f"docker: {e}", file=sys.stderr)
    if errors:
        return 1
    print(f"docker: {len(stages)} stages parse (BuildKit parser), sources and embedded files reach the build, runs as {user}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
