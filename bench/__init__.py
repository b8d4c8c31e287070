"""Benchmarks behind `make bench`: each writes CSV (+ PNG) and a markdown summary under results/."""
