#!/usr/bin/env bash
# Configures and builds torchfit in ./build (Release, Ninja when present, ccache when present).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${TORCHFIT_BUILD_DIR:-build}
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
if [ ! -f "$build_dir/CMakeCache.txt" ]; then
  cmake -S . -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release "$@"
fi
# ccache must not reject the precompiled header (see cmake/TorchfitPch.cmake).
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
cmake --build "$build_dir" -j "${TORCHFIT_JOBS:-2}"
