#!/usr/bin/env bash
# The equal-compute controls of PBT (population 8) on the transformer ids: `random-search`
# and `grid-cosine` spend PBT's budget without its exploitation (every other LR id has
# them). Resumable and run one copy per core, like queue.sh.
set -u
cd "$(dirname "$0")/../.."
source .venv/bin/activate
source runs/transformer/card.sh
export OMP_NUM_THREADS=1
for level in "transformer Transformer-Easy-Adam" "transformer-medium Transformer-Medium-Adam" "transformer-hard Transformer-Hard-Adam"; do
    set -- $level
    for agent in random-search grid-cosine; do
        for split in test test-ood; do card "$agent" "$1" "$2" "$split"; done
    done
done
echo "== $(date -u +%FT%T) controls queue done"
