#!/usr/bin/env bash
# Build (once) and install llama-cpp-python with explicit CPU flags, then smoke-test it.
#
# Why not a plain `pip install llama-cpp-python`: its default build uses -march=native
# (GGML_NATIVE=ON). On Sapphire Rapids VMs that compiles ggml's AMX kernels, and they crash
# (SIGSEGV) on any prompt longer than one token. We build with GGML_NATIVE=OFF and turn on the
# instruction sets /proc/cpuinfo reports — never AMX. pip's own wheel cache ignores CMAKE_ARGS,
# so the wheel is cached here under a key that includes the flags.
#
# Usage: build_llama_wheel.sh PYTHON VERSION
set -euo pipefail
PY=${1:?python}; VERSION=${2:?version}
flags=(-DGGML_NATIVE=OFF)
cpuinfo=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
has() { grep -qw "$1" <<<"$cpuinfo"; }
if [ "$(uname -m)" = "x86_64" ]; then
  has sse4_2 && flags+=(-DGGML_SSE42=ON)
  has avx && flags+=(-DGGML_AVX=ON)
  has avx2 && flags+=(-DGGML_AVX2=ON)
  has fma && flags+=(-DGGML_FMA=ON)
  has f16c && flags+=(-DGGML_F16C=ON)
  has bmi2 && flags+=(-DGGML_BMI2=ON)
  has avx512f && has avx512bw && has avx512vl && flags+=(-DGGML_AVX512=ON)
  flags+=(-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF)
else
  flags=()  # other architectures: llama.cpp's defaults
fi
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
