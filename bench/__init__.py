"""Benchmarks: throughput, CPU and memory of the indexer against ceilings and baselines
measured in the same run on the embedded stack (`make bench`, `python -m bench.run`)."""
