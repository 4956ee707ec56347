#!/usr/bin/env bash
# Build kube-apiserver from the Debian source package `kubernetes` and cache the
# binary outside the repository, so the Kubernetes tests run against a real API
# server offline. Idempotent: exits at once when the cached binary exists.
#
#   tests/k8s/build-apiserver.sh            # prints the binary's path on stdout
#   KUBECARBON_APISERVER_CACHE=/some/dir tests/k8s/build-apiserver.sh
#
# Needs root for apt-get (Debian packages: etcd-server, golang-go, gcc, libc6-dev, rsync, jq,
# dpkg-dev, golang-github-modern-go-reflect2-dev) on first use.
set -euo pipefail

KUBERNETES_VERSION=1.20.2
CACHE_ROOT=${KUBECARBON_APISERVER_CACHE:-/var/cache/kubecarbon}
CACHE_DIR=$CACHE_ROOT/kube-apiserver-$KUBERNETES_VERSION
BINARY=$CACHE_DIR/kube-apiserver
# gcc and libc6-dev: golang-go only recommends them, and the build tools use cgo.
APT_PACKAGES=(etcd-server golang-go gcc libc6-dev rsync jq dpkg-dev golang-github-modern-go-reflect2-dev)
# Bookworm's deb822 sources file lists only binary packages; this adds the sources.
DEB_SRC_FILE=/etc/apt/sources.list.d/kubecarbon-deb-src.sources

log() { echo "build-apiserver: $*" >&2; }

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

if [[ -x $BINARY ]]; then
    install_packages etcd-server
    echo "$BINARY"
    exit 0
fi

mkdir -p "$CACHE_ROOT"
# Two concurrent `make test` runs must not build twice into the same directory.
exec 9>"$CACHE_ROOT/.build-apiserver.lock"
flock 9
if [[ -x $BINARY ]]; then
    echo "$BINARY"
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
# and the server panics on most JSON requests; Debian's v1.0.2 is compatible.
REFLECT2_SRC=/usr/share/gocode/src/github.com/modern-go/reflect2
[[ -d $REFLECT2_SRC ]] || { log "missing $REFLECT2_SRC"; exit 1; }
rm -rf "$SOURCE_DIR/vendor/github.com/modern-go/reflect2"
cp -r "$REFLECT2_SRC" "$SOURCE_DIR/vendor/github.com/modern-go/reflect2"

log "building kube-apiserver (several minutes, about 1.3 GiB of memory)"
cd "$SOURCE_DIR"
# The 1.20 build scripts run in GOPATH mode and stamp the version from these.
export KUBE_GIT_VERSION=v$KUBERNETES_VERSION KUBE_GIT_TREE_STATE=clean
export GO111MODULE=off GOFLAGS= GOCACHE=$BUILD_DIR/gocache
make WHAT=cmd/kube-apiserver >&2

mkdir -p "$CACHE_DIR"
install -m 0755 "$SOURCE_DIR/_output/bin/kube-apiserver" "$BINARY.tmp"
mv "$BINARY.tmp" "$BINARY"
cd /
rm -rf "$BUILD_DIR"
log "cached $BINARY"
echo "$BINARY"
