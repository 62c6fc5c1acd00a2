#!/usr/bin/env bash
# Move the queues' finished cards (written atomically, so a NAME.json is whole) into
# leaderboards/results as compact NAME.json.gz + NAME.curves.npz.
set -eu
cd "$(dirname "$0")/../.."
source .venv/bin/activate
shopt -s nullglob
for card in runs/transformer/*.json; do
    ganno-bench compact "$card"
    name=$(basename "$card" .json)
    mv "runs/transformer/$name.json.gz" "runs/transformer/$name.curves.npz" leaderboards/results/
    rm -f "runs/transformer/$name.json.partial.jsonl" "runs/transformer/$name.lock"
done
