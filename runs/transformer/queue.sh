#!/usr/bin/env bash
# The transformer family's missing cards, one after another (run one copy per core).
# Each card's journal (OUT.partial.jsonl) makes the whole queue resumable: run it again.
# Several copies may run at once (one per core): each card is claimed with flock, which the
# kernel releases when its holder dies, and a finished card (OUT exists) is skipped.
set -u
cd "$(dirname "$0")/../.."
source .venv/bin/activate
source runs/transformer/card.sh
export OMP_NUM_THREADS=1
card hypergradient transformer-hard Transformer-Hard-Adam test-ood
card lars transformer-hard Transformer-Hard-Adam test
card lars transformer-hard Transformer-Hard-Adam test-ood
for level in "transformer Transformer-Easy-Adam" "transformer-medium Transformer-Medium-Adam" "transformer-hard Transformer-Hard-Adam"; do
    set -- $level
    for agent in step exponential cosine-restarts warmup-cosine one-cycle reduce-on-plateau cyclical halve-on-plateau; do
        for split in test test-ood; do card "$agent" "$1" "$2" "$split"; done
    done
    for split in test test-ood; do card random "$1" "$2" "$split" 0 1 2; done
done
echo "== $(date -u +%FT%T) queue done"
