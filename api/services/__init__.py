"""Use cases shared by the composition roots (the CLI now, the HTTP routes and workers next):
each combines core's deciders with eventstore's adapters."""
