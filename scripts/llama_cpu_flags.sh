# Sourced by build_llama_wheel.sh and build_llama_server.sh: sets the bash array `flags` to the
# CMake flags llama.cpp is compiled with, so the Python wheel and the llama-server binary run the
# same kernels.
#
# Why explicit flags: llama.cpp's default build uses -march=native (GGML_NATIVE=ON). On Sapphire
# Rapids VMs that compiles ggml's AMX kernels, and they crash (SIGSEGV) on any prompt longer than
# one token. We build with GGML_NATIVE=OFF and turn on the instruction sets /proc/cpuinfo
# reports — never AMX. LLAMA_CMAKE_ARGS (e.g. the Docker image's portable set) replaces the
# detection.
if [ -n "${LLAMA_CMAKE_ARGS:-}" ]; then
  read -r -a flags <<<"$LLAMA_CMAKE_ARGS"
else
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
fi
