"""Benchmarks of a real m2mauth server: ``make bench`` (``python -m bench``).

Never part of ``make test``. See bench/README.md for what is measured and how
to read the results.
"""
