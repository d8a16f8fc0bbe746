#!/usr/bin/env bash
# System packages vggspec's tests use that pip cannot install: Graphviz's `dot`, which renders
# `vggspec graph` drawings to SVG/PNG. Does nothing when `dot` is already on PATH.
set -euo pipefail

if command -v dot >/dev/null 2>&1; then
  exit 0
fi

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"; else return 1; fi
}

echo "Installing Graphviz (for 'vggspec graph') ..." >&2
if command -v apt-get >/dev/null 2>&1 && as_root true 2>/dev/null; then
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends graphviz >/dev/null
elif command -v brew >/dev/null 2>&1; then
  brew install graphviz
elif command -v conda >/dev/null 2>&1; then
  conda install -y graphviz
else
  echo "Could not install Graphviz: install it with your system's package manager" >&2
  echo "(Debian/Ubuntu: apt-get install graphviz; Fedora: dnf install graphviz)." >&2
  exit 1
fi
command -v dot >/dev/null 2>&1
