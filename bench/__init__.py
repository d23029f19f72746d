"""Benchmarks: each measures Chronicle beside a ceiling in the same run (raw asyncpg for the log,
the training loop without emission for the triad) and prints both with their ratio."""
