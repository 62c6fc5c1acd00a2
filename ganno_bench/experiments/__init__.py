"""Reproductions and benchmarks built on the library: the generalisation study,
BOIL's claim and the speed benches."""
