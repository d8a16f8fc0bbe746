#!/usr/bin/env bash
# System packages vggspec's tests use that pip cannot install: Graphviz's `dot`, which renders
# `vggspec graph` drawings to SVG/PNG, and the zsh and fish shells, which load the scripts
# `vggspec completion zsh|fish` prints. Installs only what is missing; does nothing when all are there.
set -euo pipefail

missing=()
command -v dot >/dev/null 2>&1 || missing+=(graphviz)
command -v zsh >/dev/null 2>&1 || missing+=(zsh)
command -v fish >/dev/null 2>&1 || missing+=(fish)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"; else return 1; fi
}

echo "Installing ${missing[*]} (for 'vggspec graph' and the completion scripts' tests) ..." >&2
if command -v apt-get >/dev/null 2>&1 && as_root true 2>/dev/null; then
  as_root apt-get update -qq
  # The shells are for two tests that check the completion scripts in them (they say so when skipped):
  # should they not install, Graphviz alone is what the tests cannot do without.
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends graphviz >/dev/null
elif command -v brew >/dev/null 2>&1; then
  brew install "${missing[@]}"
elif command -v conda >/dev/null 2>&1; then
  conda install -y -c conda-forge "${missing[@]}"
else
  echo "Could not install ${missing[*]}: install them with your system's package manager" >&2
  echo "(Debian/Ubuntu: apt-get install ${missing[*]}; Fedora: dnf install ${missing[*]})." >&2
  exit 1
fi
command -v dot >/dev/null 2>&1
