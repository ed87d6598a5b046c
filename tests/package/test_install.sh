#!/usr/bin/env bash
# Installs torchfit into a temporary prefix, builds docs/examples (an out-of-tree callback
# plugin) against the installed CMake package, and trains with it through the installed runner.
# Usage: test_install.sh <build dir> <source dir>
set -euo pipefail
build=$1
source=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cmake --install "$build" --prefix "$work/prefix" >/dev/null
test -x "$work/prefix/bin/torchfit"
test -f "$work/prefix/lib/cmake/torchfit/torchfitConfig.cmake"
test -f "$work/prefix/include/torchfit/torchfit.hpp"
test -f "$work/prefix/include/torchfit/version.hpp"
# The install indexed its plugin folder: the first listing loads no plugin and caches nothing.
test -f "$work/prefix/lib/torchfit/plugins/plugins.index"
XDG_CACHE_HOME="$work/cache" "$work/prefix/bin/torchfit" plugins >"$work/first.txt"
grep -q "early_stopping" "$work/first.txt"
test ! -e "$work/cache/torchfit"

cmake -S "$source/docs/examples" -B "$work/example" -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/example" -j 2 >/dev/null
test -f "$work/example/loss_ratio.so"
# An out-of-tree plugin installs into <its prefix>/lib/torchfit/plugins, and loads from there.
cmake --install "$work/example" --prefix "$work/mine" >/dev/null
test -f "$work/mine/lib/torchfit/plugins/loss_ratio.so"
"$work/prefix/bin/torchfit" plugins --plugin-dir "$work/mine/lib/torchfit/plugins" | grep -q "loss_ratio"

# The installed runner finds its own plugins, and the new one through --plugin-dir and the
# environment variable alike.
cd "$work"
"$work/prefix/bin/torchfit" plugins --plugin-dir "$work/example" | tee plugins.txt
grep -q "loss_ratio" plugins.txt
grep -q "$work/prefix/lib/torchfit/plugins" plugins.txt
TORCHFIT_PLUGIN_PATH="$work/example" "$work/prefix/bin/torchfit" train --model dnn_binary --epochs 3 \
  --callbacks early_stopping,loss_ratio,lr_monitor -q --history h.csv | tee train.txt
head -1 h.csv | grep -q "loss_ratio"
test "$(wc -l < h.csv)" -eq 4
# The out-of-tree dataset plugin: trained on, recorded in the run's settings, evaluated again.
test -f "$work/example/squares.so"
"$work/prefix/bin/torchfit" train --model mlp --task regression --dataset squares --squares.samples 300 --epochs 2 \
  --plugin-dir "$work/example" -q --ckpt-path sq --history sq.csv | tee squares.txt
grep -q "^dataset = squares" sq.ini
grep -q "^samples = 300" sq.ini
"$work/prefix/bin/torchfit" evaluate --ckpt-path sq --plugin-dir "$work/example" | grep -q "val_loss="
# docs/quickstart.md's program, built in a folder of its own: it finds the installed plugins
# without TORCHFIT_PLUGIN_PATH (they are beside the library, not beside the program).
(cd "$work/example" && env -u TORCHFIT_PLUGIN_PATH ./ring_dnn 100 >ring.txt 2>&1) || { cat "$work/example/ring.txt"; exit 1; }
grep -q "^stopped: " "$work/example/ring.txt"
# The library and the runner report the same version.
"$work/prefix/bin/torchfit" --version | grep -q "torchfit $(sed -n 's/^project(torchfit VERSION \([0-9.]*\).*/\1/p' "$source/CMakeLists.txt")"
echo "install test: ok"
