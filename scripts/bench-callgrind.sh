#!/usr/bin/env bash
# Instructions executed by each loop of torchfit_bench (A hand-written, B fit(), C default
# plugins, D no-op plugins), counted by valgrind's callgrind: unlike wall time on a shared VM,
# the count is the same from one run to the next, so a difference of 0.5% is real.
#
#   bash scripts/bench-callgrind.sh                 # ring 10 epochs, MLP 1 epoch of 768 samples
#   RING_EPOCHS=5 MLP_SAMPLES=0 bash scripts/bench-callgrind.sh --variants AB
#
# Needs valgrind (apt-get install valgrind) before torchfit_bench is built: the benchmark marks
# each timed run with callgrind's client requests (valgrind/callgrind.h). One thread each for
# OpenBLAS and LibTorch, so that no worker spins for a varying number of instructions.
# Extra arguments go to torchfit_bench. Takes a few minutes: everything runs ~50x slower.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bench=${BENCH:-$root/build/bin/torchfit_bench}

command -v valgrind >/dev/null || { echo "bench-callgrind: valgrind is not installed: apt-get install valgrind, then rebuild (bash scripts/build.sh)" >&2; exit 2; }
[ -x "$bench" ] || { echo "bench-callgrind: $bench not found: build first (bash scripts/build.sh)" >&2; exit 2; }

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
mlp_samples=${MLP_SAMPLES:-768}
mlp_epochs=1
[ "$mlp_samples" -gt 0 ] || { mlp_epochs=0; mlp_samples=1; }
if ! OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 valgrind --tool=callgrind --callgrind-out-file="$out/cg.%p" \
    "$bench" --reps 1 --loops-only --epochs "${RING_EPOCHS:-10}" --mlp-epochs "$mlp_epochs" \
    --mlp-samples "$mlp_samples" "$@" >"$out/log" 2>&1; then
  cat "$out/log" >&2
  echo "bench-callgrind: torchfit_bench failed under valgrind (its output is above)" >&2
  exit 1
fi

shopt -s nullglob
dumps=("$out"/cg.*.*)
if [ ${#dumps[@]} -eq 0 ]; then
  echo "bench-callgrind: no per-run counts: $bench was built without valgrind/callgrind.h; rebuild it now that valgrind is installed" >&2
  exit 1
fi
for f in "${dumps[@]}"; do
  printf '%s %s\n' "$(sed -n 's/^desc: Trigger: Client Request: //p' "$f")" "$(sed -n 's/^summary: //p' "$f")"
done | awk '
  $2 == "warm-up" { next }
  { count[$1, $2] = $3; if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 } }
  END {
    printf "%-6s %-8s %16s %8s\n", "loop", "variant", "instructions", "vs A"
    for (i = 1; i <= n; i++) {
      w = order[i]
      split("A B C D", vs, " ")
      for (j = 1; j <= 4; j++) {
        if (!((w, vs[j]) in count)) continue
        ratio = ((w, "A") in count) ? sprintf("%8.4f", count[w, vs[j]] / count[w, "A"]) : "       -"
        printf "%-6s %-8s %16d %s\n", w, vs[j], count[w, vs[j]], ratio
      }
      if (((w, "B") in count) && ((w, "D") in count)) printf "%-6s D/B %30.4f\n", w, count[w, "D"] / count[w, "B"]
    }
  }'
