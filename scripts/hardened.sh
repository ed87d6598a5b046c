#!/usr/bin/env bash
# The hardened build, in ./build-hardened: clang with AddressSanitizer and UndefinedBehavior-
# Sanitizer (any report fails), the "unit" tests run under them, then each libFuzzer harness
# (config file, CSV input, state file, IDX images, weight files) runs for FUZZ_SECONDS (default 60) from its seed corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
build_dir=build-hardened
fuzz_seconds=${FUZZ_SECONDS:-60}
if [ ! -f "$build_dir/CMakeCache.txt" ]; then
  CC=clang CXX=clang++ cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DTORCHFIT_SANITIZE=address,undefined -DTORCHFIT_FUZZ=ON -DTORCHFIT_BUILD_EXAMPLES=OFF
fi
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
cmake --build "$build_dir" -j "${TORCHFIT_JOBS:-2}" --target unit_tests fuzz_config fuzz_csv fuzz_state fuzz_idx fuzz_weights

# LibTorch is not built with the sanitizers; its own one-time allocations are not ours to report.
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
(cd "$build_dir" && ctest -L unit --output-on-failure -j 2)

# Each fuzzer works on a copy of its corpus, so new inputs it finds do not touch the repository.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for target in config csv state idx weights; do
  mkdir -p "$work/$target"
  cp tests/fuzz/corpus/$target/* "$work/$target/"
  echo "fuzz_$target: ${fuzz_seconds}s"
  if ! "$build_dir/bin/fuzz_$target" -max_total_time="$fuzz_seconds" -timeout=20 -rss_limit_mb=6000 \
      -print_final_stats=1 -artifact_prefix="$work/crash-$target-" "$work/$target" >"$work/$target.log" 2>&1; then
    tail -n 80 "$work/$target.log"
    for crash in "$work"/crash-$target-*; do
      [ -f "$crash" ] && { echo "input that failed ($crash), base64:"; base64 "$crash" | head -c 20000; echo; }
    done
    echo "hardened: fuzz_$target failed" >&2
    exit 1
  fi
  grep -E "^Done|new_units_added|peak_rss" "$work/$target.log"
done
echo "hardened: unit tests clean under ASan+UBSan, fuzzers found nothing in ${fuzz_seconds}s each"
