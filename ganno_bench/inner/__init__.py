"""What is trained inside an episode: task specs, instances and splits, the networks,
the inner-training engines and the gradient-noise estimator.

The lowest wing above :mod:`ganno_bench.data`: it knows nothing of envs, agents or
benchmarks.
"""
