#!/usr/bin/env bash
# Build Kubernetes binaries from the Debian source package `kubernetes` and cache
# them outside the repository, so the tests run a real API server and a real
# node offline. Idempotent: exits at once when every binary asked for is cached.
#
#   tests/k8s/build-kubernetes.sh kube-apiserver          # prints each binary's path
#   tests/k8s/build-kubernetes.sh kubelet kube-proxy kube-scheduler kube-controller-manager pause
#   KUBECARBON_APISERVER_CACHE=/some/dir tests/k8s/build-kubernetes.sh ...
#
# Each binary lands in <cache>/<name>-<version>/<name>. `pause` is the pod
# sandbox's process, compiled statically from the tree's build/pause source.
# Missing binaries are built together in one `make WHAT=...` run (all five: about
# 8 minutes and 3 GB of build cache on 2 cores, removed afterwards).
# Needs root for apt-get (Debian packages: etcd-server, golang-go, gcc, libc6-dev,
# rsync, jq, dpkg-dev, golang-github-modern-go-reflect2-dev) on first use.
set -euo pipefail

KUBERNETES_VERSION=1.20.2
CACHE_ROOT=${KUBECARBON_APISERVER_CACHE:-/var/cache/kubecarbon}
# gcc and libc6-dev: golang-go only recommends them, and the build tools use cgo.
APT_PACKAGES=(etcd-server golang-go gcc libc6-dev rsync jq dpkg-dev golang-github-modern-go-reflect2-dev)
# Bookworm's deb822 sources file lists only binary packages; this adds the sources.
DEB_SRC_FILE=/etc/apt/sources.list.d/kubecarbon-deb-src.sources
KNOWN_BINARIES=" kube-apiserver kubelet kube-proxy kube-scheduler kube-controller-manager pause "

log() { echo "build-kubernetes: $*" >&2; }

(($#)) || { log "usage: $0 BINARY... (of:$KNOWN_BINARIES)"; exit 2; }
for name in "$@"; do
    [[ $KNOWN_BINARIES == *" $name "* ]] || { log "unknown binary $name (known:$KNOWN_BINARIES)"; exit 2; }
done

cached_path() { echo "$CACHE_ROOT/$1-$KUBERNETES_VERSION/$1"; }

missing_binaries() {
    local name
    for name in "$@"; do
        [[ -x $(cached_path "$name") ]] || echo "$name"
    done
}

print_paths() {
    local name
    for name in "$@"; do cached_path "$name"; done
}

install_packages() {
    local missing=() package
    for package in "$@"; do
        dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
    done
    ((${#missing[@]})) || return 0
    log "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

if [[ -z $(missing_binaries "$@") ]]; then
    install_packages etcd-server
    print_paths "$@"
    exit 0
fi

mkdir -p "$CACHE_ROOT"
# Two concurrent `make test` runs must not build twice into the same directory.
exec 9>"$CACHE_ROOT/.build-kubernetes.lock"
flock 9
mapfile -t TO_BUILD < <(missing_binaries "$@")
if ((${#TO_BUILD[@]} == 0)); then
    print_paths "$@"
    exit 0
fi

if ! grep -rqs '^\(Types:.*deb-src\|deb-src \)' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    log "enabling deb-src for the Debian archive in $DEB_SRC_FILE"
    codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
    cat >"$DEB_SRC_FILE" <<SOURCES
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $codename
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
    apt-get update -qq
fi
install_packages "${APT_PACKAGES[@]}"

BUILD_DIR=$CACHE_ROOT/build-$KUBERNETES_VERSION
rm -rf "$BUILD_DIR"
mkdir -p "$BUILD_DIR"
cd "$BUILD_DIR"
log "fetching the Debian source package kubernetes into $BUILD_DIR"
apt-get source -qq kubernetes >&2
SOURCE_DIR=$(find "$BUILD_DIR" -mindepth 1 -maxdepth 1 -type d -name 'kubernetes-*' | head -n1)
[[ -n $SOURCE_DIR ]] || { log "apt-get source kubernetes produced no source tree"; exit 1; }
# Bookworm's package is 1.20.5+really1.20.2: check we got the version the tests expect.
head -n1 "$SOURCE_DIR/debian/changelog" | grep -q "really$KUBERNETES_VERSION\|($KUBERNETES_VERSION" || {
    log "the source package is not kubernetes $KUBERNETES_VERSION: $(head -n1 "$SOURCE_DIR/debian/changelog")"
    exit 1
}

# reflect2 v1.0.1 (vendored) reads Go runtime internals that changed in Go 1.18+,
# and the binaries panic on most JSON requests; Debian's v1.0.2 is compatible.
REFLECT2_SRC=/usr/share/gocode/src/github.com/modern-go/reflect2
[[ -d $REFLECT2_SRC ]] || { log "missing $REFLECT2_SRC"; exit 1; }
rm -rf "$SOURCE_DIR/vendor/github.com/modern-go/reflect2"
cp -r "$REFLECT2_SRC" "$SOURCE_DIR/vendor/github.com/modern-go/reflect2"

cd "$SOURCE_DIR"
GO_TARGETS=()
for name in "${TO_BUILD[@]}"; do
    [[ $name == pause ]] || GO_TARGETS+=("cmd/$name")
done
if ((${#GO_TARGETS[@]})); then
    log "building ${GO_TARGETS[*]} (cold: about 4 minutes for one, 8 for all five, on 2 idle cores)"
    # The 1.20 build scripts run in GOPATH mode and stamp the version from these.
    export KUBE_GIT_VERSION=v$KUBERNETES_VERSION KUBE_GIT_TREE_STATE=clean
    export GO111MODULE=off GOFLAGS= GOCACHE=$BUILD_DIR/gocache
    make WHAT="${GO_TARGETS[*]}" >&2
fi
if [[ " ${TO_BUILD[*]} " == *" pause "* ]]; then
    log "compiling build/pause statically"
    # the flags of the tree's build/pause/Makefile, minus its container toolchain
    pause_version=$(sed -n 's/^TAG ?*= *//p' build/pause/Makefile)
    mkdir -p _output/bin
    gcc -Os -Wall -Werror -static -DVERSION="v$pause_version-kubecarbon" \
        -o _output/bin/pause build/pause/linux/pause.c
fi

for name in "${TO_BUILD[@]}"; do
    target=$(cached_path "$name")
    mkdir -p "$(dirname "$target")"
    install -m 0755 "_output/bin/$name" "$target.tmp"
    mv "$target.tmp" "$target"
    log "cached $target"
done
cd /
rm -rf "$BUILD_DIR"
print_paths "$@"
