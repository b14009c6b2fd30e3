#!/usr/bin/env bash
# Build (once) and install llama-cpp-python with explicit CPU flags, then smoke-test it.
#
# Why not a plain `pip install llama-cpp-python`: its default build uses -march=native, which
# crashes on some CPUs (scripts/llama_cpu_flags.sh says why and picks the flags; llama-server is
# built with the same ones). pip's own wheel cache ignores CMAKE_ARGS, so the wheel is cached
# here under a key that includes the flags.
#
# Usage: build_llama_wheel.sh PYTHON VERSION
set -euo pipefail
PY=${1:?python}; VERSION=${2:?version}
# shellcheck source=llama_cpu_flags.sh
source "$(dirname "$0")/llama_cpu_flags.sh"
key=$(printf '%s ' "$VERSION" "$(uname -m)" "${flags[@]}" | sha256sum | cut -c1-16)
cache="${XDG_CACHE_HOME:-$HOME/.cache}/solace/wheels/$key"
wheel=$(ls "$cache"/llama_cpp_python-"$VERSION"-*.whl 2>/dev/null | head -n1 || true)
if [ -z "$wheel" ]; then
  echo "Building llama-cpp-python $VERSION (a few minutes, once) with: ${flags[*]}"
  mkdir -p "$cache"
  CMAKE_ARGS="${flags[*]}" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    "$PY" -m pip wheel --no-deps --no-cache-dir --no-binary llama-cpp-python \
    "llama-cpp-python==$VERSION" -w "$cache"
  wheel=$(ls "$cache"/llama_cpp_python-"$VERSION"-*.whl | head -n1)
else
  echo "Reusing the llama-cpp-python wheel in $cache"
fi
"$PY" -m pip install --no-deps --force-reinstall "$wheel"  # replace any other build of the same version
# Its runtime dependencies (numpy, jinja2, diskcache, typing-extensions) come with `.[bot]`.
