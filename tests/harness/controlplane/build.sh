#!/usr/bin/env bash
# Build a real Kubernetes control plane from source, once: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl and kwok, all from the Go module proxy.
# With --node, also the kubelet of the same release, for a real node beside kwok's fake one.
#
#   build.sh [--node]
#
# Prints the directory holding the binaries on stdout; progress goes to stderr.
# The binaries land in $PLANTLINE_CACHE/controlplane/bin-<k8s>-<etcd>-<kwok>/ (PLANTLINE_CACHE
# defaults to ~/.cache/plantline), so a warm run only checks that they are there and a version
# bump builds afresh. Go's module and build caches live in $PLANTLINE_CACHE/go/.
#
# KUBEBUILDER_ASSETS (the envtest convention: a directory with kube-apiserver, etcd and maybe
# more) is honoured: binaries found there are used as they are, only the missing ones are built,
# and the printed directory holds links to both.
#
# Why wrapper modules: k8s.io/kubernetes requires its staging modules (k8s.io/api, ...) at
# v0.0.0 and replaces them with ./staging paths, and etcd's server module replaces its siblings
# with ../ paths; replace directives of a dependency are ignored, so `go install pkg@version`
# cannot resolve them. A small module generated under the cache requires the program's module
# and replaces each staging module with its published version; `go mod tidy` then resolves the
# rest from the program's own go.mod.
set -euo pipefail

K8S_VERSION="${PLANTLINE_K8S_VERSION:-v1.35.8}"
ETCD_VERSION="${PLANTLINE_ETCD_VERSION:-v3.6.16}"
KWOK_VERSION="${PLANTLINE_KWOK_VERSION:-v0.8.0}"
GO_MINIMUM="1.26"  # etcd 3.6.16 says `go 1.26.0` in its go.mod; k8s 1.35 needs 1.25

PROGRAMS=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok)
case "${1:-}" in
    "") ;;
    --node) PROGRAMS+=(kubelet) ;;
    *) printf 'usage: build.sh [--node]\n' >&2; exit 2 ;;
esac
KUBE_PROGRAMS=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet)

CACHE="${PLANTLINE_CACHE:-$HOME/.cache/plantline}"
ROOT="$CACHE/controlplane"
BIN="$ROOT/bin-$K8S_VERSION-$ETCD_VERSION-$KWOK_VERSION"

step() {
    printf '[controlplane %4ds] %s\n' "$SECONDS" "$*" >&2
}

die() {
    printf 'controlplane/build.sh: error: %s\n' "$*" >&2
    exit 1
}

if [[ -n "${KUBEBUILDER_ASSETS:-}" && ! -d "$KUBEBUILDER_ASSETS" ]]; then
    die "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS is not a directory (unset it to build everything)"
fi

# kwok does nothing without Stages; this file holds kwok's own default ones ("fast" nodes and
# pods, node heartbeats through Leases), taken from the kwok module's kustomize/stage/fast.
STAGES=kwok-stages.yaml
ARTIFACTS=("${PROGRAMS[@]}" "$STAGES")

present() { # $1: directory, $2: artifact
    if [[ "$2" == "$STAGES" ]]; then [[ -f "$1/$2" ]]; else [[ -x "$1/$2" ]]; fi
}

# The artifacts this run has to make: those neither in KUBEBUILDER_ASSETS nor already built.
find_missing() {
    missing=()
    local artifact
    for artifact in "${ARTIFACTS[@]}"; do
        if [[ -n "${KUBEBUILDER_ASSETS:-}" ]] && present "$KUBEBUILDER_ASSETS" "$artifact"; then
            continue
        fi
        present "$BIN" "$artifact" || missing+=("$artifact")
    done
}
find_missing

# Link what KUBEBUILDER_ASSETS has and what was built into one directory, and print it.
publish() {
    if [[ -z "${KUBEBUILDER_ASSETS:-}" ]]; then
        printf '%s\n' "$BIN"
        return
    fi
    local assets merged program
    assets="$(cd "$KUBEBUILDER_ASSETS" && pwd -P)"
    merged="$ROOT/assets-$(printf '%s' "$assets" | cksum | cut -d' ' -f1)-$K8S_VERSION-$ETCD_VERSION-$KWOK_VERSION"
    mkdir -p "$merged"
    for program in "${ARTIFACTS[@]}"; do
        if present "$assets" "$program"; then
            ln -sfn "$assets/$program" "$merged/$program"
        else
            ln -sfn "$BIN/$program" "$merged/$program"
        fi
    done
    printf '%s\n' "$merged"
}

if [[ ${#missing[@]} -eq 0 ]]; then
    step "all binaries present (${KUBEBUILDER_ASSETS:+KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS, }$BIN)"
    publish
    exit 0
fi

GO="${GO:-$(command -v go || true)}"
if [[ -z "$GO" && -x /usr/local/go/bin/go ]]; then
    GO=/usr/local/go/bin/go
fi
if [[ -z "$GO" || ! -x "$GO" ]]; then
    die "Go >= $GO_MINIMUM is needed to build ${missing[*]} (GO=${GO:-not found on PATH}, KUBEBUILDER_ASSETS=${KUBEBUILDER_ASSETS:-unset}).
  Install it from https://go.dev/dl/ (tar -C /usr/local -xzf go1.26.*.linux-amd64.tar.gz, then
  /usr/local/go/bin/go is found), or point GO=/path/to/go, or set KUBEBUILDER_ASSETS to a directory
  holding ${PROGRAMS[*]}."
fi
go_version="$("$GO" env GOVERSION)"  # e.g. go1.26.8
have="${go_version#go}"
if [[ "$(printf '%s\n%s\n' "$GO_MINIMUM" "$have" | sort -V | head -n1)" != "$GO_MINIMUM" ]]; then
    die "$GO is $go_version; building etcd $ETCD_VERSION and Kubernetes $K8S_VERSION needs Go >= $GO_MINIMUM (https://go.dev/dl/)"
fi

export GOTOOLCHAIN=local CGO_ENABLED=0
export GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build"
export GOFLAGS="-modcacherw -buildvcs=false"  # the module cache stays removable with rm -rf
export GOWORK=off GO111MODULE=on
mkdir -p "$ROOT" "$GOMODCACHE" "$GOCACHE"

# One build at a time: pytest-xdist workers or two checkouts may ask at once.
exec 9>"$ROOT/.build.lock"
if command -v flock >/dev/null; then
    step "taking the build lock" && flock 9
fi
find_missing
if [[ ${#missing[@]} -eq 0 ]]; then
    step "built meanwhile by another run"
    publish
    exit 0
fi
step "building ${missing[*]} with $go_version into $BIN"

wanted() {
    local program
    for program in "${missing[@]}"; do
        [[ "$program" == "$1" ]] && return 0
    done
    return 1
}

# Binaries are built into a scratch directory and moved into $BIN only once they linked.
STAGE="$ROOT/.stage-$$"
LOG="$ROOT/build.log"
rm -rf "$ROOT"/.stage-*  # left by a build that was killed; we hold the lock, so none is running
mkdir -p "$STAGE" "$BIN"
trap 'rm -rf "$STAGE"' EXIT
: >"$LOG"

# Run a go command in directory $1, its chatter (downloads, compiler output) into $LOG.
go_in() {
    local dir="$1"
    shift
    printf '\n$ (cd %s && go %s)\n' "$dir" "$*" >>"$LOG"
    if ! (cd "$dir" && "$GO" "$@") >>"$LOG" 2>&1; then
        tail -n 30 "$LOG" | sed 's/^/    /' >&2
        die "go $1 failed in $dir (whole log: $LOG)"
    fi
}

# A module of its own under $ROOT/src/<name>: go line $2, requiring $3, replacing as in $4,
# and importing the packages $5... so that go mod tidy keeps their modules.
wrapper_module() {
    local dir="$1" go_line="$2" require="$3" replaces="$4"
    shift 4
    rm -rf "$dir"
    mkdir -p "$dir"
    {
        printf '// Generated by tests/harness/controlplane/build.sh: build scaffolding, not PlantLine code.\n'
        printf 'module plantline.local/controlplane/%s\n\ngo %s\n\nrequire %s\n' "$(basename "$dir")" "$go_line" "$require"
        [[ -z "$replaces" ]] || printf '\nreplace (\n%s\n)\n' "$replaces"
    } >"$dir/go.mod"
    {
        printf '//go:build tools\n\n// Keeps the programs'"'"' packages (and so their modules) in go.mod for go mod tidy.\npackage tools\n\nimport (\n'
        local package
        for package in "$@"; do
            printf '\t_ "%s"\n' "$package"
        done
        printf ')\n'
    } >"$dir/tools.go"
}

# The directory of module $1 in the module cache, downloading it if needed.
module_dir() {
    local dir
    dir="$(cd "$ROOT" && "$GO" mod download -json "$1" 2>>"$LOG" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')"
    [[ -d "$dir" ]] || die "could not download $1 from $("$GO" env GOPROXY) (log: $LOG)"
    printf '%s\n' "$dir"
}

kube_wanted=()
for program in "${KUBE_PROGRAMS[@]}"; do
    if wanted "$program"; then kube_wanted+=("$program"); fi
done
if [[ ${#kube_wanted[@]} -gt 0 ]]; then
    step "k8s.io/kubernetes $K8S_VERSION: reading its go.mod from the module proxy"
    kube_gomod="$(cd "$ROOT" && "$GO" mod download -json "k8s.io/kubernetes@$K8S_VERSION" 2>>"$LOG" |
        sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')"
    [[ -f "$kube_gomod" ]] || die "could not download the go.mod of k8s.io/kubernetes@$K8S_VERSION (log: $LOG)"
    # v1.35.8 -> v0.35.8, the tag of every staging module cut from the same release.
    staging_version="v0.${K8S_VERSION#v1.}"
    replaces="$(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\./staging/.*$#\1#p' "$kube_gomod" |
        while read -r module; do printf '\t%s => %s %s\n' "$module" "$module" "$staging_version"; done)"
    [[ -n "$replaces" ]] || die "found no ./staging replace lines in $kube_gomod"
    kube_go_line="$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$kube_gomod")"
    step "k8s.io/kubernetes $K8S_VERSION: $(printf '%s\n' "$replaces" | wc -l) staging modules, each at $staging_version"
    kube_src="$ROOT/src/kubernetes-$K8S_VERSION"
    kube_packages=()
    for program in "${kube_wanted[@]}"; do
        kube_packages+=("k8s.io/kubernetes/cmd/$program")
    done
    wrapper_module "$kube_src" "$kube_go_line" "k8s.io/kubernetes $K8S_VERSION" "$replaces" "${kube_packages[@]}"
    # Keep the GODEBUG defaults Kubernetes is released with.
    sed -n 's/^godebug /godebug /p' "$kube_gomod" >>"$kube_src/go.mod"
    step "k8s.io/kubernetes $K8S_VERSION: go mod tidy (downloads the sources the first time)"
    go_in "$kube_src" mod tidy
    minor="${K8S_VERSION#v1.}"
    minor="${minor%%.*}"
    ldflags="-s -w"
    for package in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ldflags+=" -X $package.gitVersion=$K8S_VERSION -X $package.gitMajor=1 -X $package.gitMinor=$minor"
        ldflags+=" -X $package.gitTreeState=clean -X $package.buildDate=1970-01-01T00:00:00Z"
    done
    step "k8s.io/kubernetes $K8S_VERSION: go build ${kube_wanted[*]} (the long step: ~8 min on 2 cores)"
    go_in "$kube_src" build -trimpath -ldflags "$ldflags" -o "$STAGE/" "${kube_packages[@]}"
fi

if wanted etcd; then
    etcd_src="$ROOT/src/etcd-$ETCD_VERSION"
    step "etcd $ETCD_VERSION: wrapper module, go mod tidy"
    # In 3.6 the etcd program's main package is the root of go.etcd.io/etcd/server/v3.
    etcd_gomod="$(module_dir "go.etcd.io/etcd/server/v3@$ETCD_VERSION")/go.mod"
    etcd_go_line="$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$etcd_gomod")"
    wrapper_module "$etcd_src" "$etcd_go_line" "go.etcd.io/etcd/server/v3 $ETCD_VERSION" "" "go.etcd.io/etcd/server/v3"
    go_in "$etcd_src" mod tidy
    step "etcd $ETCD_VERSION: go build"
    go_in "$etcd_src" build -trimpath -ldflags "-s -w" -o "$STAGE/etcd" go.etcd.io/etcd/server/v3
fi

if wanted kwok; then
    # kwok's go.mod has no replace directives, so go install pkg@version works for it.
    step "kwok $KWOK_VERSION: go install sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
    GOBIN="$STAGE" go_in "$ROOT" install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
fi

if wanted "$STAGES"; then
    step "kwok $KWOK_VERSION: its default stages (kustomize/stage/fast) into $STAGES"
    stages_root="$(module_dir "sigs.k8s.io/kwok@$KWOK_VERSION")/kustomize/stage"
    {
        printf '# kwok %s default Stages, concatenated from kustomize/stage/fast by build.sh.\n' "$KWOK_VERSION"
        # Two levels of kustomization: fast -> ../node/fast, ... -> node-initialize.yaml, ...
        sed -n 's/^- //p' "$stages_root/fast/kustomization.yaml" | while read -r part; do
            sed -n 's/^- //p' "$stages_root/fast/$part/kustomization.yaml" | while read -r file; do
                printf -- '---\n'
                cat "$stages_root/fast/$part/$file"
            done
        done
    } >"$STAGE/$STAGES"
    grep -q '^kind: Stage$' "$STAGE/$STAGES" || die "found no Stage in $stages_root/fast"
fi

for artifact in "${missing[@]}"; do
    [[ -e "$STAGE/$artifact" ]] || die "the build did not produce $artifact"
    mv -f "$STAGE/$artifact" "$BIN/$artifact"
done
step "built ${missing[*]} into $BIN"
publish
