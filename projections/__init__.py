"""Folds over the log: time travel, start-up recovery, the snapshotter (a subscriber), and a
training run's epoch-by-epoch view. Read models and their runner go here too."""
