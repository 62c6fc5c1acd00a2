# card AGENT ID-SUFFIX ENV SPLIT [SEEDS...]: evaluate one card into runs/transformer/, unless
# it is finished (there or landed in leaderboards/results) or another copy holds its lock.
# Sourced by the queues; the journal (OUT.partial.jsonl) makes each card resumable, and
# flock's lock is released by the kernel when its holder dies.
card() {
    local name="$1-$2-$4"
    if [ $# -lt 5 ]; then set -- "$@" 0; fi
    if [ -e "leaderboards/results/$name.json.gz" ] || [ -e "runs/transformer/$name.json" ]; then return; fi
    echo "== $(date -u +%FT%T) $name"
    flock --nonblock --conflict-exit-code 75 "runs/transformer/$name.lock" ganno-bench evaluate --agent "$1" --env "ganno/LayerLR-$3-v0" --split "$4" --seeds "${@:5}" \
        --out "runs/transformer/$name.json" --quiet
    if [ $? -eq 75 ]; then echo "   (claimed by another copy)"; fi
}
