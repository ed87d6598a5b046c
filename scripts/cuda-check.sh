#!/usr/bin/env bash
# Builds torchfit against a CUDA LibTorch 2.x and runs the GPU checks: the CUDA tests, the
# runner on --device cuda (float32, bf16-mixed, 16-mixed, pinned memory, resume, a checkpoint
# read on the CPU), the cnn on Fashion-MNIST, the benchmark on the GPU, then as much of the CPU
# test suite as time allows.
#
#   scripts/cuda-check.sh [LOGDIR]
#
# TORCH_PREFIX   LibTorch's CMake prefix (default: python3's torch.utils.cmake_prefix_path)
# DEPS_DEBS      folder of Debian .deb files (Boost, spdlog, fmt) unpacked and used when the machine
#                has no Boost of its own (default: .deps); fetch them on Debian with
#                apt-get download libboost1.74-dev libboost-{program-options,filesystem,test}1.74{-dev,.0} \
#                  libspdlog-dev libspdlog1.10 libfmt-dev libfmt9
# FASHION_DIR    Fashion-MNIST's four .gz files for the cnn step (default .deps/fashion-mnist, else
#                /usr/share/datasets/fashion-mnist; the step is skipped without them)
# BUDGET         seconds for the whole script; later steps are skipped past it (default 420)
# Everything goes to LOGDIR/cuda-check.log (default: $OUT, else build-cuda/logs); a step that
# fails is reported and the script goes on.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
LOGDIR=${1:-${OUT:-$ROOT/build-cuda/logs}}
mkdir -p "$LOGDIR"
BUDGET=${BUDGET:-420}
T0=$SECONDS
B=$ROOT/build-cuda
W=/tmp/torchfit-cuda-runs
exec > >(tee "$LOGDIR/cuda-check.log") 2>&1

step() { echo; echo "=== [$((SECONDS - T0)) s] $*"; }
left() { echo $((BUDGET - (SECONDS - T0))); }
run() { echo "+ $*"; "$@"; local rc=$?; [ $rc -eq 0 ] || echo "!!! rc=$rc: $*"; return $rc; }

step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
g++ --version | head -1; cmake --version | head -1; nproc
TORCH_PREFIX=${TORCH_PREFIX:-$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null)}
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cxx11 abi", torch._C._GLIBCXX_USE_CXX11_ABI)' || true
echo "LibTorch prefix: $TORCH_PREFIX"
[ -n "$TORCH_PREFIX" ] || { echo "no LibTorch: set TORCH_PREFIX"; exit 1; }

PREFIX=$TORCH_PREFIX
BOOST_ARG=()
if ! ls /usr/lib/x86_64-linux-gnu/cmake/boost_program_options-*/ >/dev/null 2>&1 && [ -d "${DEPS_DEBS:-.deps}" ]; then
  step "unpacking $(ls "${DEPS_DEBS:-.deps}"/*.deb | wc -l) Debian packages into /tmp/torchfit-deps"
  for f in "${DEPS_DEBS:-.deps}"/*.deb; do dpkg -x "$f" /tmp/torchfit-deps; done
  PREFIX="/tmp/torchfit-deps/usr;$PREFIX"
  # LibTorch 2.x wheels carry fmt headers of their own (fmt 12), which spdlog 1.10 cannot use:
  # -I puts Debian's fmt and spdlog ahead of every -isystem folder.
  mkdir -p /tmp/torchfit-deps/first
  ln -sfn /tmp/torchfit-deps/usr/include/fmt /tmp/torchfit-deps/first/fmt
  ln -sfn /tmp/torchfit-deps/usr/include/spdlog /tmp/torchfit-deps/first/spdlog
  BOOST_ARG=(-DBoost_DIR="$(ls -d /tmp/torchfit-deps/usr/lib/x86_64-linux-gnu/cmake/Boost-*)"
             -DCMAKE_CXX_FLAGS=-I/tmp/torchfit-deps/first)
  export LD_LIBRARY_PATH=/tmp/torchfit-deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
# LibTorch's CUDA libraries find cuDNN, cuBLAS... in the wheel's nvidia/ folders; the linker needs them too.
TORCH_LIB=$(dirname "$(dirname "$TORCH_PREFIX")")/lib              # torch/share/cmake -> torch/lib
NV=$(dirname "$(dirname "$(dirname "$TORCH_PREFIX")")")/nvidia      # site-packages/nvidia
EXTRA=$TORCH_LIB
for d in "$NV"/*/lib "$NV"/cu*/lib; do [ -d "$d" ] && EXTRA="$EXTRA:$d"; done
export LD_LIBRARY_PATH=$EXTRA${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

step "configure"
GEN=Ninja; command -v ninja >/dev/null || GEN="Unix Makefiles"
run cmake -S . -B "$B" -G "$GEN" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$PREFIX" \
  -DCMAKE_POLICY_VERSION_MINIMUM=3.5 -DTORCHFIT_BUILD_EXAMPLES=ON -DTORCHFIT_BUILD_TESTS=ON "${BOOST_ARG[@]}" > "$LOGDIR/configure.log" 2>&1 \
  || { tail -40 "$LOGDIR/configure.log"; exit 1; }
grep -E "torchfit:|Torch|CUDA" "$LOGDIR/configure.log" | head -20
JOBS=$(nproc)
K=(-- -k 0); [ "$GEN" = Ninja ] || K=(-- -k)

step "build"
cmake --build "$B" -j "$JOBS" "${K[@]}" > "$LOGDIR/build.log" 2>&1
rc=$?; grep -E "error|warning: .*deprecated" "$LOGDIR/build.log" | sort | uniq | head -60
[ $rc -eq 0 ] || { echo "!!! build failed"; tail -30 "$LOGDIR/build.log"; exit 1; }
TF=$B/bin/torchfit

echo "std::filesystem symbols exported by libtorch_cpu (pytorch#133437): $(nm -D "$TORCH_LIB/libtorch_cpu.so" | grep -c _ZNSt10filesystem)"
ldd "$B/bin/test_history" | grep -nE "stdc\+\+|torch_cpu"

step "CUDA tests"
run "$B/bin/test_cuda" --log_level=test_suite

step "runner on the GPU"
rm -rf "$W"; mkdir -p "$W/ring" "$W/half" "$W/bf16" "$W/resume" "$W/mlp"
run "$TF" --version
( cd "$W/ring" && run "$TF" train --model dnn_binary --epochs 100 --patience 10 --monitor val_acc --mode max --device cuda \
  && run "$TF" evaluate --model dnn_binary --device cuda && run "$TF" evaluate --model dnn_binary --device cpu \
  && run "$TF" summary --model dnn_binary | tail -4 && tail -3 history.csv )
( cd "$W/half" && run "$TF" train --model dnn_binary --epochs 30 --device cuda --precision 16-mixed --quiet && tail -2 history.csv )
( cd "$W/bf16" && run "$TF" train --model dnn_binary --epochs 30 --device cuda --precision bf16-mixed --pin-memory --quiet \
  && tail -2 history.csv )
( cd "$W/resume" && run "$TF" train --model dnn_binary --epochs 3 --device cuda --quiet \
  && run "$TF" train --model dnn_binary --resume --epochs 6 --device cuda --quiet && cat history.csv )
python3 - "$W/mlp/data.csv" <<'PY'
import random, sys
random.seed(1)
with open(sys.argv[1], "w") as f:
    f.write("a,b,c,label\n")
    for _ in range(20000):
        a, b, c = (random.gauss(0, 1) for _ in range(3))
        f.write(f"{a:.5f},{b:.5f},{c:.5f},{int(a + 2 * b - c > 0)}\n")
PY
( cd "$W/mlp" && run "$TF" train --model mlp --data data.csv --target label --task binary --epochs 10 --device cuda \
  --pin-memory --quiet && run "$TF" predict --model mlp --data data.csv --device cuda --output pred.csv \
  && head -3 pred.csv )
echo "plugins: $( { /usr/bin/time -f %e "$TF" plugins >/dev/null; } 2>&1 ) s"

# The cnn on Fashion-MNIST (the README's recipe, shortened), float32 and bf16-mixed: time per
# epoch and test accuracy. The lent machine has no Debian package: carry the four .gz files in
# FASHION_DIR (default .deps/fashion-mnist, else Debian's folder).
FASHION_DIR=${FASHION_DIR:-.deps/fashion-mnist}
[ -f "$FASHION_DIR/train-images-idx3-ubyte.gz" ] || FASHION_DIR=/usr/share/datasets/fashion-mnist
if [ -f "$FASHION_DIR/train-images-idx3-ubyte.gz" ] && [ "$(left)" -gt 120 ]; then
  FASHION_DIR=$(cd "$FASHION_DIR" && pwd)
  for p in 32 bf16-mixed; do
    step "the cnn on Fashion-MNIST on the GPU, precision $p"
    mkdir -p "$W/cnn-$p"
    ( cd "$W/cnn-$p" && run "$TF" train --model cnn --dataset fashion_mnist --fashion_mnist.folder "$FASHION_DIR" \
        --device cuda --precision "$p" --pin-memory --epochs 6 --lr 5e-3 --val-split 0.0833333333 \
        --callbacks model_checkpoint,one_cycle_lr --monitor val_accuracy --quiet \
      && cut -d, -f1,5,6 history.csv \
      && run "$TF" evaluate --fashion_mnist.split test --device cuda | head -1 )
  done
else
  echo "no Fashion-MNIST in $FASHION_DIR (or too little time left): the cnn step is skipped"
fi

if [ "$(left)" -gt 60 ]; then
  step "benchmark on the GPU, float32"
  run "$B/bin/torchfit_bench" --device cuda --reps 3 --epochs 30 --mlp-epochs 3 | tee "$LOGDIR/bench-cuda.txt"
fi
if [ "$(left)" -gt 60 ]; then
  step "the CPU test suite against this LibTorch ($(left) s left)"
  EXCLUDE="test_install"
  grep -q "data-parallel training with c10d/Gloo" "$LOGDIR/configure.log" || EXCLUDE="$EXCLUDE|distributed"
  ( cd "$B" && timeout $(( $(left) - 5 )) ctest -j "$JOBS" --output-on-failure -E "$EXCLUDE" > "$LOGDIR/ctest.log" 2>&1 )
  grep -E "tests passed|Failed|SEGFAULT|Timeout|\(Failed\)" "$LOGDIR/ctest.log" | tail -30
fi
if [ "$(left)" -gt 60 ]; then
  step "benchmark on the GPU, bf16-mixed"
  run "$B/bin/torchfit_bench" --device cuda --precision bf16-mixed --reps 3 --epochs 50 | tee "$LOGDIR/bench-cuda-bf16.txt"
fi
step "done"
