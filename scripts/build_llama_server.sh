#!/usr/bin/env bash
# Build (once) llama.cpp's native `llama-server` from the pinned llama-cpp-python sdist, with the
# same CPU flags as the Python wheel (scripts/llama_cpu_flags.sh), and cache it outside the repo.
#
# The sdist carries llama.cpp's full source (vendor/llama.cpp/tools/server/), so the server is
# the same llama.cpp version the embedded backend runs. It is linked statically (one file, no
# libllama.so beside it; it needs only libc, libstdc++ and libgomp) and built without the web
# UI, HTTPS or anything that downloads: the build works offline once the sdist is here.
#
#   ~/.cache/solace/sdist/llama_cpp_python-VERSION.tar.gz      the source (pip download, once)
#   ~/.cache/solace/llama-server/KEY/llama-server              the binary (KEY: version+flags)
#   ~/.cache/solace/bin/llama-server-VERSION -> the binary      where Solace looks for it
#
# A second run finds the binary and only re-links bin/ (seconds). The compile runs under
# `nice -n 19` (about 6 minutes on 2 idle cores). The binary's path is the last line printed.
#
# Usage: build_llama_server.sh PYTHON VERSION
set -euo pipefail
PY=${1:?python}; VERSION=${2:?version}
# shellcheck source=llama_cpu_flags.sh
source "$(dirname "$0")/llama_cpu_flags.sh"
server_flags=(
  -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF
  -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF
)
key=$(printf '%s ' "$VERSION" "$(uname -m)" server "${flags[@]}" "${server_flags[@]}" \
  | sha256sum | cut -c1-16)
root="${XDG_CACHE_HOME:-$HOME/.cache}/solace"
dir="$root/llama-server/$key"
binary="$dir/llama-server"
link="$root/bin/llama-server-$VERSION"

publish() {  # point bin/llama-server-VERSION at this build (atomic rename of a fresh link)
  mkdir -p "$root/bin"
  ln -sfn "$binary" "$link.tmp.$$" && mv -T "$link.tmp.$$" "$link"
  echo "$binary"
}

if [ -x "$binary" ] && "$binary" --version >/dev/null 2>&1; then
  echo "Reusing llama-server $VERSION in $dir" >&2
  publish
  exit 0
fi

sdist="$root/sdist/llama_cpp_python-$VERSION.tar.gz"
if [ ! -s "$sdist" ]; then
  echo "Downloading the llama-cpp-python $VERSION sdist (once) ..." >&2
  mkdir -p "$root/sdist"
  # The constraints file pins packages we are not downloading; --no-deps makes it irrelevant.
  env -u PIP_CONSTRAINT "$PY" -m pip download --no-binary :all: --no-deps -q \
    -d "$root/sdist" "llama-cpp-python==$VERSION" >&2
fi

mkdir -p "$root/llama-server"
work=$(mktemp -d "$root/llama-server/build-XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "Building llama-server $VERSION (about 6 minutes on 2 cores, once) with: ${flags[*]}" >&2
started=$SECONDS
tar -xzf "$sdist" -C "$work" --strip-components=1 --wildcards '*/vendor/llama.cpp/*'
src="$work/vendor/llama.cpp"
nice -n 19 cmake -S "$src" -B "$work/build" -G "Unix Makefiles" \
  "${flags[@]}" "${server_flags[@]}" >"$work/configure.log" 2>&1 \
  || { tail -n 30 "$work/configure.log" >&2; echo "llama-server: cmake configure failed" >&2; exit 1; }
nice -n 19 cmake --build "$work/build" --target llama-server -j "$(nproc)" \
  >"$work/build.log" 2>&1 \
  || { tail -n 30 "$work/build.log" >&2; echo "llama-server: compile failed" >&2; exit 1; }
built="$work/build/bin/llama-server"
"$built" --version >/dev/null 2>&1 || { echo "llama-server: the built binary does not run" >&2; exit 1; }
staging="$dir.tmp.$$"
rm -rf "$staging" && mkdir -p "$staging"
install -m 0755 "$built" "$staging/llama-server"
cp "$src/LICENSE" "$staging/LICENSE"  # MIT: the licence travels with the binary
printf '%s\n' "llama-cpp-python $VERSION" "${flags[*]} ${server_flags[*]}" >"$staging/BUILD_INFO"
rm -rf "$dir" && mv "$staging" "$dir"
echo "Built llama-server in $(( SECONDS - started )) s: $binary" >&2
publish
