"""``evaluate``, ``compare``, ``leaderboard``, ``references`` and ``rescore``: benchmarking
agents."""

from __future__ import annotations

import argparse
from pathlib import Path

from ganno_bench.baselines.zoo import load_agent
from ganno_bench.benchmark.cards import load_card, write_card
from ganno_bench.benchmark.curve_store import store_path
from ganno_bench.benchmark.evaluation import evaluate, finished_card, resolve_ids
from ganno_bench.benchmark.leaderboard import compare, render_leaderboard, scores_for
from ganno_bench.benchmark.references import compute_references
from ganno_bench.benchmark.scoring import rescore
from ganno_bench.benchmark.stats import aggregate
from ganno_bench.cli.common import add_budget_options, budget_overrides
from ganno_bench.inner.instances import SPLITS

METRICS = ["normalised_score", "final_test_accuracy", "neg_test_loss"]


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Play the agent on every frozen instance of the split for each seed, one episode per
    (id, instance, seed), and write a result card. Every finished episode goes to
    OUT.partial.jsonl at once, so a killed run resumes when the same command runs again; a
    finished card of the same evaluation at OUT is reused (said so) unless --rerun. Ends
    with the run's IQM and 95% CI."""
    agent = load_agent(args.agent)
    address = args.address
    if address is not None and args.backend != "ray" and hasattr(agent, "address"):
        agent.address, address = address, None  # a Ray agent's trials go there, not episodes
    out = args.out or f"{agent.name}-{args.split}.json"
    overrides = budget_overrides(args)
    kw = {"overrides": overrides, "instances": args.instances}
    card = None if args.rerun else finished_card(out, agent, args.env, args.split, args.seeds, **kw)
    reused = card is not None
    if card is None:
        card = evaluate(
            agent,
            args.env,
            args.split,
            args.seeds,
            out=out,
            # Ray: the episodes in flight, 0 for one per CPU of the cluster
            workers=None if args.backend == "ray" and args.workers == 0 else args.workers,
            progress=not args.quiet,
            rerun=True,  # checked just above
            backend=args.backend,
            address=address,
            engine=args.engine,
            batch_size=args.batch_size,
            device=args.device,
            **kw,
        )
    what = (
        f"{len(card['episodes'])} episodes of {agent.name} on {len(card['envs'])} ids, "
        f"split {args.split}"
    )
    if reused:
        print(
            f"reused the finished card {out} ({what}, made {card['created']}): the same "
            "evaluation was done already; pass --rerun to evaluate again"
        )
    else:
        print(f"wrote {out}: {what}")
    print(run_summary(card))
    return 0


def run_summary(card: dict) -> str:
    """The card's IQM with its 95% CI, over every id it holds: normalised score where the
    references score it, else the negated final test loss."""
    scored = all(e["normalised_score"] is not None for e in card["episodes"])
    metric = "normalised_score" if scored else "neg_test_loss"
    scores = scores_for(card, metric)
    runs = sum(v.size for v in scores.values())
    note = "" if scored else " (no references for these settings, so no normalised score)"
    return (
        f"IQM {metric} [95% CI] over {runs} episodes on {len(scores)} ids: "
        f"{aggregate(scores, 'iqm')}{note}"
    )


def cmd_compare(args: argparse.Namespace) -> int:
    """Two cards side by side over the ids they share: each one's IQM [95% CI] per id and
    in aggregate, and P(A > B), the probability that a run of A beats one of B."""
    print(compare(load_card(args.card_a), load_card(args.card_b), metric=args.metric))
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    """Render OUT/README.md (a generated headline, then per track and split: rankings,
    model families, per-id tables, probability of improvement, compute, plots; the card
    list last) and OUT/plots/ from the result cards, with a progress bar per stage."""
    path = render_leaderboard(
        Path(args.results), Path(args.out), metric=args.metric, progress=not args.quiet
    )
    print(f"wrote {path}")
    return 0


def cmd_references(args: argparse.Namespace) -> int:
    """Compute (resumably) and freeze the reference values of the normalised score."""
    ids = resolve_ids(args.env or ["all"])
    written = compute_references(ids, Path(args.work_file), workers=args.workers)
    for path in written:
        print(f"wrote {path}")
    missing = len(ids) - len(written)
    if missing:
        print(f"{missing} ids are not complete yet; run the same command again to resume")
    return 0


def cmd_rescore(args: argparse.Namespace) -> int:
    """Recompute the cards' normalised scores from their final test losses and the shipped
    references (after the score or the references change); the losses, curves and rates
    are kept as they are, and a compact card's curves file comes out byte for byte the same."""
    for path in args.cards:
        card = load_card(path)
        changed = rescore(card)
        if changed:
            write_card(card, path)
        print(f"{path}: {changed} of {len(card['episodes'])} scores changed")
    return 0


def cmd_compact(args: argparse.Namespace) -> int:
    """Rewrite ``NAME.json`` cards as compact ``NAME.json.gz`` + ``NAME.curves.npz`` (or,
    with --expand, back), checking that the rewritten card equals the original."""
    for name in args.cards:
        path = Path(name)
        compact = path.name.endswith(".json.gz")
        if compact != args.expand:
            form = "compact" if compact else "plain"
            raise ValueError(f"{path} is already {form}; --expand turns compact cards plain")
        target = (
            path.with_name(path.name.removesuffix(".gz"))
            if args.expand
            else path.with_name(path.name + ".gz")
        )
        card = load_card(path)
        write_card(card, target)
        if load_card(target) != card:  # lossless, or nothing is removed
            raise ValueError(f"{target}: the rewritten card differs from {path}")
        before = _size(path)
        path.unlink()
        if args.expand:
            store_path(path).unlink()
        print(f"{path} ({before / 1e6:.2f} MB) -> {target} ({_size(target) / 1e6:.2f} MB)")
    return 0


def _size(path: Path) -> int:
    """Bytes of a card with its curves file, if it has one."""
    store = store_path(path)
    extra = store.stat().st_size if path.name.endswith(".gz") and store.exists() else 0
    return path.stat().st_size + extra


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register this group's commands."""
    p = sub.add_parser("evaluate", help="evaluate an agent on the frozen instances of a split")
    p.add_argument(
        "--agent",
        required=True,
        help="built-in agent (see baselines/README.md), a saved policy (PATH.zip) or "
        "module:attribute",
    )
    p.add_argument(
        "--env",
        action="append",
        required=True,
        help="id, glob (ganno/LayerLR-*Easy*) or suite name (all, mlp, cnn, transformer, "
        "batch-size); repeatable",
    )
    p.add_argument("--split", default="test", choices=SPLITS, help="instance split")
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0, 1, 2],
        help="seeds; every instance runs once per seed",
    )
    p.add_argument("--instances", type=int, nargs="+", help="only these instance indices")
    p.add_argument("--out", help="result card path (default: AGENT-SPLIT.json); resumable")
    p.add_argument("--workers", type=int, default=1, help="parallel processes")
    p.add_argument(
        "--backend",
        choices=["processes", "ray"],
        default="processes",
        help="where episodes run: this machine's processes, or Ray tasks (a local Ray, or "
        "the cluster at --address; --workers tasks in flight, 0: one per CPU of the "
        "cluster); the episodes are the same",
    )
    p.add_argument(
        "--address",
        help="a Ray cluster to join (e.g. 10.0.0.1:6379, or auto): with --backend ray the "
        "episodes run there; for a Ray agent (pbt-tune) its Tune trials do",
    )
    p.add_argument(
        "--engine",
        choices=["sequential", "batched"],
        default="sequential",
        help="batched: play up to --batch-size episodes of an id at once over the batched "
        "engine (per-decision agents on LR ids; others fall back to sequential, saying so)",
    )
    p.add_argument("--batch-size", type=int, default=32, help="episodes per batch (batched)")
    p.add_argument("--device", default="cpu", help="device of the batched engine (cuda)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--rerun", action="store_true", help="evaluate again even if OUT is a finished card"
    )
    add_budget_options(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("compare", help="side-by-side of two result cards with CIs")
    p.add_argument("card_a", help="result card A (NAME.json or compact NAME.json.gz)")
    p.add_argument("card_b", help="result card B, of the same split")
    p.add_argument("--metric", default="normalised_score", choices=METRICS, help="metric")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("leaderboard", help="render the leaderboard from result cards")
    p.add_argument("--results", default="leaderboards/results", help="folder of result cards")
    p.add_argument("--out", default="leaderboards", help="folder of README.md and plots/")
    p.add_argument("--metric", default="normalised_score", choices=METRICS, help="metric")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_leaderboard)

    p = sub.add_parser("references", help="compute and freeze the normalised-score references")
    p.add_argument("--env", action="append", help="id, glob or suite name (repeatable)")
    p.add_argument("--workers", type=int, default=1, help="parallel processes")
    p.add_argument(
        "--work-file",
        default="references.partial.jsonl",
        help="resumable journal of finished instances",
    )
    p.set_defaults(func=cmd_references)

    p = sub.add_parser(
        "rescore", help="recompute result cards' normalised scores from their losses"
    )
    p.add_argument("cards", nargs="+", help="result card files (rewritten atomically)")
    p.set_defaults(func=cmd_rescore)

    p = sub.add_parser(
        "compact",
        help="store result cards compactly and losslessly: NAME.json.gz + NAME.curves.npz",
    )
    p.add_argument("cards", nargs="+", help="NAME.json cards (NAME.json.gz with --expand)")
    p.add_argument("--expand", action="store_true", help="turn compact cards back into JSON")
    p.set_defaults(func=cmd_compact)
