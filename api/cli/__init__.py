"""The `chronicle` command line: every command, registered here in one place.

Settings come from CHRONICLE_* environment variables; with no database or Redis URL set, the
embedded servers start in the data directory (``api.cli.runner``). ``main`` is the console
script: it runs the app and turns an unexpected exception into one line on standard error.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from api.cli import (
    audit,
    bench,
    demo,
    log,
    privacy,
    projections,
    proofs,
    replay,
    retention,
    serve,
    stack,
    train,
    worker,
)
from api.cli.runner import OPTIONS, error_status
from core.errors import ChronicleError

__all__ = ["app", "main"]

# No rich tracebacks from typer: an unexpected error is one line unless --debug (main).
app = typer.Typer(
    help="Chronicle: an event-sourced coordination backend.\n\nExample: chronicle demo",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(
    help="Benchmarks that print Chronicle's figures beside a ceiling measured in the same run."
    "\n\nExample: chronicle bench append --json"
)
app.add_typer(bench_app, name="bench")
projections_app = typer.Typer(
    help="Read models: the daemon that keeps them current, their status, rebuilds."
    "\n\nExample: chronicle projections status"
)
app.add_typer(projections_app, name="projections")
audit_app = typer.Typer(
    help="Audit queries and exports; proofs that the record was not altered, checked offline."
    "\n\nExample: chronicle audit verify --all"
)
app.add_typer(audit_app, name="audit")
privacy_app = typer.Typer(
    help="Personal data: the master key that wraps every subject's data key."
    "\n\nExample: chronicle privacy rotate-master-key"
)
app.add_typer(privacy_app, name="privacy")
retention_app = typer.Typer(
    help="Retention: how long each category stays in the hot log, and the archival run."
    "\n\nExample: chronicle retention list"
)
app.add_typer(retention_app, name="retention")
keys_app = typer.Typer(
    help="API keys: each with a tenant, an actor and scopes; stored hashed.\n\nExample: chronicle keys list"
)
app.add_typer(keys_app, name="keys")


@app.callback()
def global_options(
    debug: Annotated[
        bool,
        typer.Option("--debug", envvar="CHRONICLE_DEBUG", help="show the traceback of an error"),
    ] = False,
) -> None:
    OPTIONS.debug = debug


app.command()(log.migrate)
app.command()(demo.demo)
app.command()(stack.up)
app.command("import")(log.import_)
app.command()(log.export)
app.command()(replay.replay)
app.command()(replay.diff)
app.command()(replay.snapshot)
app.command()(replay.snapshotter)
app.command()(replay.recover)
app.command()(train.train)
app.command()(privacy.forget)
privacy_app.command("rotate-master-key")(privacy.rotate_master_key)
app.command()(serve.serve)
app.command()(worker.worker)
keys_app.command("create")(serve.create_key)
keys_app.command("list")(serve.list_keys)
keys_app.command("revoke")(serve.revoke_key)
retention_app.command("set")(retention.set_policy)
retention_app.command("list")(retention.list_policies)
retention_app.command("remove")(retention.remove)
retention_app.command("run")(retention.run)
bench_app.command("append")(bench.append)
bench_app.command("import")(bench.import_)
bench_app.command("replay")(bench.replay)
bench_app.command("triad")(bench.triad)
bench_app.command("projections")(bench.projections)
bench_app.command("api")(bench.api)
bench_app.command("console")(bench.console)
projections_app.command("run")(projections.run)
projections_app.command("status")(projections.status)
projections_app.command("rebuild")(projections.rebuild)
audit_app.command("query")(audit.query)
audit_app.command("seal")(proofs.seal)
audit_app.command("prove")(proofs.prove)
audit_app.command("check")(proofs.check_proof)
audit_app.command("verify")(proofs.verify)
audit_app.command("checkpoint")(proofs.checkpoint)
audit_app.command("public-key")(proofs.public_key)
audit_app.command("rotate-key")(proofs.rotate_key)


def main() -> None:
    """The console script: the app, with any error as one line on standard error.

    Expected errors raised outside ``run_with_services`` (input checked after the work) get
    its treatment; anything else is a bug or an environment gone wrong, reported by type and
    message with exit status 1, and re-raised with ``--debug`` for the traceback.
    """
    try:
        app()
    except ChronicleError as exc:
        sys.exit(error_status(exc))
    except Exception as exc:
        if OPTIONS.debug:
            raise
        sys.exit(f"chronicle: error: {_one_line(exc)} (run with --debug for the traceback)")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
