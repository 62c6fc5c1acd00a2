#!/usr/bin/env bash
# The batched engine's drift over whole episodes, per model family (README, "The batched
# engine"): reference-engine cards made here on every MLP and CNN id (test, instances 0-3,
# seed 0) replayed on the batched engine, and a sample of the committed transformer cards
# (22 of these 24 were made on this project's AVX2 EPYC, the processor of the reports here)
# replayed the same way. The evaluations resume from their journals; about an hour on one
# core.
set -eu
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
for agent in cosine tuned-constant hypergradient baselines/ppo/ppo-a-mlp-easy-seed0.zip; do
    name=$(basename "$agent" .zip)
    ganno-bench evaluate --agent "$agent" --env mlp --env cnn --split test --seeds 0 \
        --instances 0 1 2 3 --out "runs/drift/cards/$name-test.json" --quiet
done
ganno-bench verify --results runs/drift/cards --engine batched --per-card 48 \
    --tolerance 1e-4 --quiet > leaderboards/drift/batched-engine-mlp-cnn.txt
cards=()
for level in transformer transformer-medium transformer-hard; do
    for agent in boil constant cosine tuned-constant tuned-cosine hypergradient lars; do
        cards+=("$agent-$level-test")
    done
done
for level in easy medium hard; do cards+=("ppo-a-mlp-easy-on-transformer-$level-adam-test"); done
ganno-bench verify "${cards[@]}" --engine batched --per-card 4 --tolerance 1e-4 --quiet \
    > leaderboards/drift/batched-engine-transformer.txt
