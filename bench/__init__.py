"""Benchmarks for tracker (issue #5): `python -m bench`, see bench/README.md."""
