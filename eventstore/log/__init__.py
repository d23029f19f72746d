"""The event log: the PostgreSQL store (append with group commit, reads, subscriptions), its
in-memory twin for tests and the contract suite, and bulk import and export."""
