"""Read models, subscriptions with checkpoints, audit and time travel (built on eventstore)."""
