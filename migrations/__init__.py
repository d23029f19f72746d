"""Alembic environment and revisions: the only place Chronicle writes DDL."""
