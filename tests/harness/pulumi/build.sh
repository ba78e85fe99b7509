#!/usr/bin/env bash
# Build the Pulumi CLI and the Kubernetes provider from the Go module proxy, once, for the stacks'
# `pulumi up` test (tests/kube/test_stacks_core_e2e.py).
#
#   build.sh [--rebuild]
#
# Prints the directory holding `pulumi` and `pulumi-resource-kubernetes` on stdout; progress goes
# to stderr, with a line every 20 s while Go compiles. The binaries land in
# $PLANTLINE_CACHE/pulumi/bin-<hash>/ (PLANTLINE_CACHE defaults to ~/.cache/plantline, where the
# control plane is built too), <hash> being that of this script, which names every version: a warm
# run only checks the binaries are there, and any change here builds afresh. Go's module and build
# caches are shared with the control plane's build ($PLANTLINE_CACHE/go/). With --rebuild the
# binaries are built again even if present.
#
# Put the directory on PATH with PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true: the CLI then
# takes the provider from PATH (an ambient plugin) and never downloads one. The Python language
# host is not built here: its Go module (github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3)
# is refused by the module proxy ("403 Forbidden: This module version is not available"), so the
# tests run plantline_testing.pulumi_host, a language host written against the SDK's own gRPC stubs.
#
# The CLI: pkg/v3 replaces sdk/v3 with ../sdk, and a dependency's replace directives are ignored,
# so a generated wrapper module requires both at the same version (and keeps pkg's one other
# replace). The provider: its main package embeds schema-embed.json, which the upstream Makefile
# generates (the schema with its version set) and the module does not ship; the module is copied
# out of the module cache, the file generated, its ../sdk replace swapped for the published SDK
# it requires, and it is built as the main module.
set -euo pipefail

PULUMI_VERSION="v3.276.0"
PROVIDER_MODULE="github.com/pulumi/pulumi-kubernetes/provider/v4"
PROVIDER_VERSION="v4.0.0-20260115033456-f47bc2d6f199"  # the one version the module proxy serves
PROVIDER_SDK_VERSION="v4.24.0"  # the kubernetes SDK that provider's go.mod requires
CLIPBOARD_REPLACE="github.com/atotto/clipboard=github.com/tgummerer/clipboard@v0.0.0-20241001131231-d02d263e614e"
GO_MINIMUM="1.26"  # pkg/v3 v3.276.0 says `go 1.26.6`

CACHE="${PLANTLINE_CACHE:-$HOME/.cache/plantline}"
ROOT="$CACHE/pulumi"
HASH="$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-12)"
BIN="$ROOT/bin-$HASH"
PROGRAMS=(pulumi pulumi-resource-kubernetes)
case "${1:-}" in
    "") ;;
    --rebuild) rm -rf "$BIN" ;;
    *) printf 'usage: build.sh [--rebuild]\n' >&2; exit 2 ;;
esac

say() { printf '[pulumi %4ds] %s\n' "$SECONDS" "$*" >&2; }
die() { printf 'pulumi/build.sh: error: %s\n' "$*" >&2; exit 1; }

built() {
    local program
    for program in "${PROGRAMS[@]}"; do [[ -x "$BIN/$program" ]] || return 1; done
}

if built; then
    say "all binaries present ($BIN)"
    printf '%s\n' "$BIN"
    exit 0
fi

GO="${GO:-$(command -v go || true)}"
[[ -n "$GO" || ! -x /usr/local/go/bin/go ]] || GO=/usr/local/go/bin/go
[[ -n "$GO" && -x "$GO" ]] || die "Go >= $GO_MINIMUM is needed to build ${PROGRAMS[*]} (https://go.dev/dl/, or GO=/path/to/go)"
have="$("$GO" env GOVERSION)"
[[ "$(printf '%s\n%s\n' "$GO_MINIMUM" "${have#go}" | sort -V | head -n1)" == "$GO_MINIMUM" ]] ||
    die "$GO is $have; the Pulumi CLI $PULUMI_VERSION needs Go >= $GO_MINIMUM"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOWORK=off GO111MODULE=on
# PLANTLINE_GOCACHE: another Go build cache, e.g. an empty one for a cold build's figure
# (tests/bench/stacks_bench.py --cold); the modules stay the shared ones.
export GOMODCACHE="$CACHE/go/mod" GOCACHE="${PLANTLINE_GOCACHE:-$CACHE/go/build}" GOFLAGS="-modcacherw -buildvcs=false"
mkdir -p "$ROOT" "$GOMODCACHE" "$GOCACHE"

exec 9>"$ROOT/.build.lock"  # one build at a time
say "taking the build lock" && flock 9
if built; then
    say "built meanwhile by another run"
    printf '%s\n' "$BIN"
    exit 0
fi

LOG="$ROOT/build.log"
STAGE="$ROOT/.stage-$$"
rm -rf "$ROOT"/.stage-*  # left by a killed build; we hold the lock
mkdir -p "$STAGE"
trap 'rm -rf "$STAGE"' EXIT
: >"$LOG"

# Run `go ARGS...` in directory $1, its output into $LOG; while it runs, say every 20 s how many
# packages it has compiled (go build -v names each) and the last one.
go_in() {
    local dir="$1" started lines pid
    shift
    printf '\n$ (cd %s && go %s)\n' "$dir" "$*" >>"$LOG"
    started="$(wc -l <"$LOG")"
    (cd "$dir" && exec "$GO" "$@") >>"$LOG" 2>&1 &
    pid=$!
    while ! wait_for "$pid" 20; do
        lines=$(($(wc -l <"$LOG") - started))
        say "  go $1: $lines lines of output so far (last: $(tail -n1 "$LOG" | cut -c1-80))"
    done
    if ! wait "$pid"; then
        tail -n 30 "$LOG" | sed 's/^/    /' >&2
        die "go $* failed in $dir (whole log: $LOG)"
    fi
}

# Wait up to $2 seconds for process $1 to end; succeed once it has.
wait_for() {
    local i
    for ((i = 0; i < $2; i++)); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 1
    done
    ! kill -0 "$1" 2>/dev/null
}

# The directory of module $1 in the module cache, downloaded if needed.
module_dir() {
    local dir
    dir="$(cd "$ROOT" && "$GO" mod download -json "$1" 2>>"$LOG" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')"
    [[ -d "$dir" ]] || die "could not download $1 from $("$GO" env GOPROXY) (log: $LOG)"
    printf '%s\n' "$dir"
}

build_cli() {
    local src="$ROOT/src/cli-$PULUMI_VERSION" go_line
    go_line="$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$(module_dir "github.com/pulumi/pulumi/pkg/v3@$PULUMI_VERSION")/go.mod")"
    say "the CLI $PULUMI_VERSION: wrapper module (pkg/v3 and sdk/v3 at $PULUMI_VERSION), go mod tidy"
    rm -rf "$src" && mkdir -p "$src"
    cat >"$src/go.mod" <<MOD
// Generated by tests/harness/pulumi/build.sh: build scaffolding, not PlantLine code.
module plantline.local/pulumi/cli

go $go_line

require (
	github.com/pulumi/pulumi/pkg/v3 $PULUMI_VERSION
	github.com/pulumi/pulumi/sdk/v3 $PULUMI_VERSION
)
MOD
    printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"\n' >"$src/tools.go"
    go_in "$src" mod edit -replace "$CLIPBOARD_REPLACE"
    go_in "$src" mod tidy
    say "the CLI $PULUMI_VERSION: go build (the long step)"
    go_in "$src" build -v -trimpath -o "$STAGE/pulumi" \
        -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$PULUMI_VERSION" \
        github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
}

build_provider() {
    local src="$ROOT/src/kubernetes-$PROVIDER_VERSION" cmd version="${PROVIDER_VERSION#v}"
    say "the Kubernetes provider $PROVIDER_VERSION: copying the module, generating schema-embed.json"
    rm -rf "$src" && mkdir -p "$src"
    cp -R "$(module_dir "$PROVIDER_MODULE@$PROVIDER_VERSION")/." "$src/"
    chmod -R u+w "$src"
    cmd="$src/cmd/pulumi-resource-kubernetes"
    # What the upstream generate.go does: the schema and the Terraform mapping, re-serialised, the
    # schema with the provider's version.
    python3 - "$cmd" "$version" <<'PY'
import json, pathlib, sys
cmd, version = pathlib.Path(sys.argv[1]), sys.argv[2]
schema = json.loads((cmd / "schema.json").read_text())
schema["version"] = version
(cmd / "schema-embed.json").write_text(json.dumps(schema, separators=(",", ":")))
mapping = json.loads((cmd / "terraform-mapping.json").read_text())
(cmd / "terraform-mapping-embed.json").write_text(json.dumps(mapping, separators=(",", ":")))
PY
    go_in "$src" mod edit -dropreplace github.com/pulumi/pulumi-kubernetes/sdk/v4 \
        -require "github.com/pulumi/pulumi-kubernetes/sdk/v4@$PROVIDER_SDK_VERSION"
    go_in "$src" mod tidy
    say "the Kubernetes provider $PROVIDER_VERSION: go build (the long step)"
    go_in "$src" build -v -trimpath -o "$STAGE/pulumi-resource-kubernetes" \
        -ldflags "-s -w -X $PROVIDER_MODULE/pkg/version.Version=$version" ./cmd/pulumi-resource-kubernetes
}

say "building ${PROGRAMS[*]} with $have into $BIN (log: $LOG)"
build_cli
build_provider
mkdir -p "$BIN"
for program in "${PROGRAMS[@]}"; do
    mv -f "$STAGE/$program" "$BIN/$program"
done
say "built ${PROGRAMS[*]} into $BIN"
printf '%s\n' "$BIN"
