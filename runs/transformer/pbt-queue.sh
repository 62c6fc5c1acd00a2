#!/usr/bin/env bash
# PBT (population 8) on Transformer-Medium and -Hard, on the second core beside queue.sh.
# Resumable like queue.sh: each card's journal keeps finished episodes.
set -u
cd "$(dirname "$0")/../.."
source .venv/bin/activate
export OMP_NUM_THREADS=1
for level in "medium Medium" "hard Hard"; do
    set -- $level
    for split in test test-ood; do
        name="pbt-transformer-$1-$split"
        if [ -e "leaderboards/results/$name.json.gz" ]; then continue; fi
        echo "== $(date -u +%FT%T) $name"
        ganno-bench evaluate --agent pbt --env "ganno/LayerLR-Transformer-$2-Adam-v0" \
            --split "$split" --seeds 0 --out "runs/transformer/$name.json" --quiet
    done
done
echo "== $(date -u +%FT%T) pbt queue done"
