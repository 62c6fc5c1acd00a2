"""The leaderboard: result cards rendered into markdown tables and PNG plots, and compare.

Every number is an estimate with a 95% stratified-bootstrap percentile CI from
:mod:`ganno_bench.benchmark.stats`, so readers see how sure a ranking is, not only who is ahead.
Each split (test, test-ood, train) gets its own section, because scores on different
instance sets are not comparable: a ranking by aggregate IQM, the same per model family,
a per-id table, a probability-of-improvement matrix and plots (performance profiles,
learning curves and per-layer learning-rate schedules).

The suite's two tracks are never aggregated together either: the layerwise learning-rate
track's sections come first (as ``## Split ...``), then, when cards hold batch-size ids,
the batch-size track's (``## Batch-size track, split ...``: the same tables over the
batch-size ids only, its plots named ``batch-size-<split>-*`` and showing the chosen
batch size per decision instead of per-layer learning rates). An agent whose cards cover
both tracks appears in each track's tables with that track's episodes only.

Metrics are oriented so that higher is better: ``normalised_score`` (1 = the tuned
constant-rate reference), ``final_test_accuracy`` and ``neg_test_loss`` (the negated final
inner-test loss, for cards made before reference values exist). The output depends only on
the cards and the bootstrap seed, so re-rendering unchanged cards changes no file.
"""

from ganno_bench.benchmark.leaderboard.render import compare, render_leaderboard
from ganno_bench.benchmark.leaderboard.runs import (
    METRICS,
    Run,
    family_of,
    load_cards,
    merge_runs,
    scores_for,
    split_by_track,
    track_of_id,
)
from ganno_bench.benchmark.leaderboard.tables import probability_matrix

__all__ = [
    "METRICS",
    "Run",
    "compare",
    "family_of",
    "load_cards",
    "merge_runs",
    "probability_matrix",
    "render_leaderboard",
    "scores_for",
    "split_by_track",
    "track_of_id",
]
