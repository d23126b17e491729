#!/usr/bin/env bash
# Creates the peer gateways bench/compare.py measures, from the pins committed beside this script:
#
#   bench/envs/litellm  a venv with litellm[proxy] (bench/peers/litellm/requirements.txt,
#                       every transitive package pinned by constraints.txt)
#   bench/envs/portkey  node_modules of @portkey-ai/gateway (bench/peers/portkey/package*.json, npm ci)
#
# Each lives in its own environment under bench/envs/ (git-ignored), never in Tollway's venv.
# Usage: bench/peers/setup.sh [litellm] [portkey]      (no argument: both)
# Re-running is cheap: an environment whose pins have not changed is left as it is.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
envs="$(cd "$here/.." && pwd)/envs"
mkdir -p "$envs"

stamp() { cat "$@" | sha256sum | cut -d' ' -f1; }

setup_litellm() {
    local dir="$envs/litellm" pins
    pins="$(stamp "$here/litellm/requirements.txt" "$here/litellm/constraints.txt")"
    if [[ -f "$dir/.pins" && "$(cat "$dir/.pins")" == "$pins" ]]; then
        echo "litellm: $dir is up to date"
        return
    fi
    local python="${PYTHON:-$(command -v python3.11 || command -v python3)}"
    echo "litellm: creating $dir with $python"
    rm -rf "$dir"
    "$python" -m venv "$dir"
    "$dir/bin/pip" install -q --upgrade pip
    "$dir/bin/pip" install -q -r "$here/litellm/requirements.txt" -c "$here/litellm/constraints.txt"
    echo "$pins" > "$dir/.pins"
    "$dir/bin/python" -c 'import importlib.metadata as m; print("litellm:", m.version("litellm"), "installed")'
}

setup_portkey() {
    local dir="$envs/portkey" pins major
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        echo "portkey: node and npm are needed (Node.js 20: apt-get install -y nodejs npm)" >&2
        return 1
    fi
    major="$(node -p 'process.versions.node.split(".")[0]')"
    if (( major < 20 )); then
        echo "portkey: Node.js >= 20 is needed, this is $(node --version)" >&2
        return 1
    fi
    pins="$(stamp "$here/portkey/package.json" "$here/portkey/package-lock.json")"
    if [[ -f "$dir/.pins" && "$(cat "$dir/.pins")" == "$pins" ]]; then
        echo "portkey: $dir is up to date"
        return
    fi
    echo "portkey: creating $dir with node $(node --version)"
    rm -rf "$dir"
    mkdir -p "$dir"
    cp "$here/portkey/package.json" "$here/portkey/package-lock.json" "$dir/"
    # --ignore-scripts: the package's only install script is patch-package, with no patches shipped.
    (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
    echo "$pins" > "$dir/.pins"
    echo "portkey: @portkey-ai/gateway $(node -p "require('$dir/node_modules/@portkey-ai/gateway/package.json').version") installed"
}

targets=("$@")
(( ${#targets[@]} )) || targets=(litellm portkey)
for t in "${targets[@]}"; do
    case "$t" in
        litellm) setup_litellm ;;
        portkey) setup_portkey ;;
        *) echo "unknown peer: $t (litellm or portkey)" >&2; exit 2 ;;
    esac
done
