"""Benchmarking an agent: evaluation on frozen instances, reference scores, result
cards and their schema, rliable-style statistics and the leaderboard."""
