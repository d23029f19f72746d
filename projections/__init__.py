"""Folds over the log: time travel, start-up recovery, the snapshotter (a subscriber), and a
training run's epoch-by-epoch view; the read models (``models``), their runner (``runner``) and
the audit queries over the audit index (``audit``)."""
