#!/usr/bin/env bash
# The main job: install, build, then train the ring classifier with the default plugins.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
mkdir -p runs/ring
cd runs/ring
echo "+ torchfit train --model dnn_binary --epochs 100 --patience 10 --monitor val_acc --mode max   (in runs/ring)"
../../build/bin/torchfit train --model dnn_binary --epochs 100 --patience 10 --monitor val_acc --mode max
