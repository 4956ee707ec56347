#!/usr/bin/env bash
# Build and cache kube-apiserver (see build-kubernetes.sh); prints its path on stdout.
exec "$(dirname "$0")/build-kubernetes.sh" kube-apiserver
