"""Helpers that tests and benchmarks share: tiny projects, their corpus, server processes.

Not used by the pipeline itself; they run from a source checkout (``PROJECT_ROOT``).
"""
