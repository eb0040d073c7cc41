"""The benchmark suite: `python -m scripts.bench` runs every benchmark, side by side with its baselines, and writes
results.json and a Markdown report with plots. The benchmarks themselves are scripts/bench_*.py."""
