#!/usr/bin/env bash
# Protocol b's shipped policies on each transformer id (a and c have played them; 100k's
# first policies are left out); the protocol's own target cards are reused, not replayed.
# The reference engine: batched-engine transformer cards drift past the committed-card
# rerun's tolerance over a whole episode (Adam magnifies float32 rounding).
set -u
cd "$(dirname "$0")/../.."
source .venv/bin/activate
export OMP_NUM_THREADS=1
for protocol in b; do
    for level in Easy Medium Hard; do
        echo "== $(date -u +%FT%T) protocol $protocol on Transformer-$level"
        ganno-bench reproduce generalisation --protocol "$protocol" \
            --other "ganno/LayerLR-Transformer-$level-Adam-v0" --engine sequential --workers 2 --quiet | grep -v '^|' | tail -3
    done
done
echo "== $(date -u +%FT%T) ppo queue done"
