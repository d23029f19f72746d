"""`chronicle audit prove | check | verify | checkpoint | public-key | rotate-key`: proofs that
the record was not altered, and the keys that sign them (docs/compliance.md).

``check`` needs no database and no server: it reads a proof file and a public key, and is the
command an auditor runs on their own machine. Every other command talks to the database.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from api.cli.progress import progress_bar
from api.cli.runner import run_with_services
from core.errors import InvalidInput
from core.proofs import Checked, NoteError, ProofError, Verifier, check, parse_verifier_key
from core.settings import Settings
from eventstore.embedded import Services

__all__ = ["check_proof", "checkpoint", "prove", "public_key", "rotate_key", "seal", "verify"]

KEY_HELP = "a verifier key (name+id+key, as `chronicle audit public-key` prints it) or a file holding one"


def _verifiers(keys: list[str]) -> list[Verifier]:
    found = []
    for key in keys:
        path = Path(key)
        text = path.read_text().strip() if "+" not in key and path.is_file() else key.strip()
        try:
            found.append(parse_verifier_key(text))
        except NoteError as exc:
            raise InvalidInput(f"--public-key {key}: {exc}") from None
    return found


def _fail(message: str, status: int) -> None:
    typer.echo(f"chronicle: error: {message}", err=True)
    raise typer.Exit(status)


def prove(
    event_id: Annotated[
        str | None, typer.Argument(help="the event's id (a UUID)", show_default=False)
    ] = None,
    consistency: Annotated[
        tuple[int, int] | None,
        typer.Option(
            help="prove that the checkpoint of OLD events is a prefix of that of NEW", metavar="OLD NEW"
        ),
    ] = None,
    size: Annotated[
        int | None, typer.Option(help="against the checkpoint of this size [default: latest]")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="write the proof here instead of standard output")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="the proof is JSON either way")] = False,
) -> None:
    """Print a proof (JSON) that an event is in the log, or that one checkpoint extends another.

    Example: chronicle audit prove 0193a1f2-7c1e-7d3a-9f00-2b4c6d8e0a1f --out proof.json
    """
    from eventstore.audit.proofs import consistency_document, inclusion_document
    from eventstore.pg import connect

    if (event_id is None) == (consistency is None):
        _fail("give an EVENT_ID, or --consistency OLD NEW", 2)
    parsed = None
    if event_id is not None:
        try:
            parsed = uuid.UUID(event_id)
        except ValueError:
            _fail(f"EVENT_ID {event_id!r} is not a UUID", 2)

    async def work(settings: Settings, svc: Services) -> dict[str, Any]:
        conn = await connect(svc.database_url)
        try:
            if parsed is not None:
                return await inclusion_document(conn, parsed, size)
            assert consistency is not None
            return await consistency_document(conn, *consistency)
        finally:
            await conn.close()

    text = json.dumps(run_with_services(work), indent=2) + "\n"
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)
        typer.echo(f"proof written to {out}", err=True)


def check_proof(
    proof_file: Annotated[Path, typer.Argument(help="a proof written by `chronicle audit prove`")],
    public_key: Annotated[list[str], typer.Option("--public-key", help=KEY_HELP)],
    as_json: Annotated[bool, typer.Option("--json", help="print the verdict as JSON")] = False,
) -> None:
    """Verify a proof offline, with only the log's public key: no database, no server.

    Example: chronicle audit check proof.json --public-key chronicle.vkey
    """
    try:
        document = json.loads(proof_file.read_text())
        checked = check(document, _verifiers(public_key))
    except (OSError, json.JSONDecodeError, InvalidInput) as exc:
        _fail(f"{proof_file}: {exc}", 2)
    except ProofError as exc:
        if as_json:
            typer.echo(json.dumps({"verified": False, "error": str(exc)}))
        _fail(f"NOT VERIFIED: {exc}", 1)
    if as_json:
        typer.echo(json.dumps(_checked_json(checked)))
        return
    signed = ", ".join(checked.signed_by)
    cp = checked.checkpoint
    if checked.event is not None:
        e = checked.event
        typer.echo(
            f"verified: event {e['event_id']} ({e['event_type']} v{e['schema_version']}, "
            f"stream {e['stream_id']} version {e['stream_version']}, tenant {e['tenant_id'] or '-'}) "
            f"is entry {checked.index} of {cp.origin} at size {cp.size}, signed by {signed}"
        )
    else:
        assert checked.old_checkpoint is not None
        typer.echo(
            f"verified: {cp.origin} at size {checked.old_checkpoint.size} is a prefix of the log at size "
            f"{cp.size}, both signed by {signed}"
        )


def _checked_json(checked: Checked) -> dict[str, Any]:
    old = checked.old_checkpoint
    return {
        "verified": True,
        "kind": checked.kind,
        "origin": checked.checkpoint.origin,
        "size": checked.checkpoint.size,
        "old_size": old.size if old is not None else None,
        "signed_by": checked.signed_by,
        "index": checked.index,
        "event": checked.event,
    }


def verify(
    stream: Annotated[str | None, typer.Argument(help="one stream to verify", show_default=False)] = None,
    all_: Annotated[bool, typer.Option("--all", help="verify the whole log")] = False,
    public_key: Annotated[
        list[str] | None,
        typer.Option(
            "--public-key", help=f"trust only this key (repeatable) [default: the database's]; {KEY_HELP}"
        ),
    ] = None,
    checkpoints: Annotated[
        list[Path] | None,
        typer.Option("--checkpoint", help="a checkpoint note kept outside the database (repeatable)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Recompute every seal from the events: stream chains, leaves, and the tree under every
    checkpoint. Reports the first broken link with its position and exits 1.

    Example: chronicle audit verify --all --public-key chronicle.vkey --checkpoint kept/cp-120000.note
    """
    from eventstore.audit.keys import known_verifiers
    from eventstore.audit.verify import Report, verify_log, verify_stream
    from eventstore.pg import connect

    if (stream is None) == (not all_):
        _fail("give a STREAM, or --all", 2)
    trusted = [p.read_text() for p in checkpoints or []]

    async def work(settings: Settings, svc: Services) -> Report:
        conn = await connect(svc.database_url)
        try:
            verifiers = _verifiers(public_key) if public_key else await known_verifiers(conn)
            if not public_key:
                typer.echo(
                    "trusting the keys recorded in the database; pass --public-key to trust yours", err=True
                )
            if stream is not None:
                return await verify_stream(conn, stream, verifiers)
            with progress_bar("verifying") as bar:
                return await verify_log(conn, verifiers, trusted=trusted, progress=bar.update)
        finally:
            await conn.close()

    report = run_with_services(work)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "ok": report.ok,
                    "events": report.events,
                    "sealed": report.sealed,
                    "unsealed": report.unsealed,
                    "oldest_unsealed": report.oldest_unsealed,
                    "checkpoints_checked": report.checkpoints_checked,
                    "breaks": [str(b) for b in report.breaks],
                },
                default=str,
            )
        )
    else:
        tail = f", {report.unsealed} not sealed yet" if report.unsealed else ""
        typer.echo(
            f"{report.events} events, {report.sealed} sealed{tail}; "
            f"{report.checkpoints_checked} checkpoints checked"
        )
    if not report.ok:
        more = f" (and {len(report.breaks) - 1} more)" if len(report.breaks) > 1 else ""
        _fail(f"broken: {report.breaks[0]}{more}", 1)


def seal() -> None:
    """Seal every event appended so far and sign a checkpoint now (the projection daemon does
    this continuously; this is for a log with no daemon running, or before a proof).

    Example: chronicle audit seal
    """
    from eventstore.audit.keys import load_or_create
    from eventstore.audit.sealer import seal_batch, unsealed_events
    from eventstore.pg import connect

    async def work(settings: Settings, svc: Services) -> tuple[int, int]:
        key = load_or_create(settings.signing_key_path, settings.log_origin)
        conn = await connect(svc.database_url)
        sealed_now, size = 0, 0
        try:
            with progress_bar("sealing") as bar:
                # Events appended meanwhile are sealed too: the total is where the bar starts.
                total = await unsealed_events(conn) if bar.enabled else None
                while True:
                    sealed = await seal_batch(conn, key, checkpoint_now=True)
                    if sealed is None:  # a daemon's sealer holds the lock for one batch: a moment
                        await asyncio.sleep(0.05)
                        continue
                    sealed_now, size = sealed_now + sealed.events, sealed.size
                    if sealed.events == 0:
                        return sealed_now, size
                    bar.update(sealed_now, max(total or 0, sealed_now) if bar.enabled else None)
        finally:
            await conn.close()

    sealed_now, size = run_with_services(work)
    typer.echo(
        f"sealed {sealed_now} events; the log's tree has {size} leaves, the latest checkpoint covers them"
    )


def checkpoint(
    size: Annotated[int | None, typer.Argument(help="the checkpoint's size [default: the latest]")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the size and the note as JSON")] = False,
) -> None:
    """Print a signed checkpoint (C2SP note), to keep outside the database.

    Example: chronicle audit checkpoint > kept/cp-$(date +%s).note
    """
    from eventstore.pg import connect

    async def work(settings: Settings, svc: Services) -> tuple[int, str]:
        conn = await connect(svc.database_url)
        try:
            if size is None:
                row = await conn.fetchrow("SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1")
            else:
                row = await conn.fetchrow("SELECT size, note FROM checkpoints WHERE size = $1", size)
        finally:
            await conn.close()
        if row is None:
            raise InvalidInput(
                "no such checkpoint" if size is not None else "no checkpoint has been signed yet"
            )
        return int(row["size"]), str(row["note"])

    found, note = run_with_services(work)
    if as_json:
        typer.echo(json.dumps({"size": found, "note": note}))
    else:
        sys.stdout.write(note)


def public_key(
    all_: Annotated[bool, typer.Option("--all", help="every key that ever signed, retired ones too")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the keys as JSON")] = False,
) -> None:
    """Print the log's verifier key (creating the signing key if there is none yet).

    Example: chronicle audit public-key > chronicle.vkey
    """
    from eventstore.audit.keys import load_or_create, register
    from eventstore.pg import connect

    async def work(settings: Settings, svc: Services) -> list[tuple[str, datetime | None]]:
        key = load_or_create(settings.signing_key_path, settings.log_origin)
        conn = await connect(svc.database_url)
        try:
            await register(conn, key)
            if not all_:
                return [(key.verifier_key, None)]
            rows = await conn.fetch("SELECT verifier_key, retired_at FROM signing_keys ORDER BY created_at")
            return [(r["verifier_key"], r["retired_at"]) for r in rows]
        finally:
            await conn.close()

    keys = run_with_services(work)
    if as_json:
        shown = [{"verifier_key": k, "retired_at": r.isoformat() if r else None} for k, r in keys]
        typer.echo(json.dumps(shown))
        return
    for verifier_key, retired_at in keys:
        typer.echo(verifier_key + (f"  (retired {retired_at})" if retired_at else ""))


def rotate_key() -> None:
    """Replace the signing key; checkpoints signed with the old one stay verifiable with it.

    Example: chronicle audit rotate-key
    """
    from eventstore.audit.keys import rotate
    from eventstore.pg import connect

    async def work(settings: Settings, svc: Services) -> tuple[str, str]:
        conn = await connect(svc.database_url)
        try:
            old, new = await rotate(conn, settings.signing_key_path, settings.log_origin)
        finally:
            await conn.close()
        return old.verifier_key, new.verifier_key

    old, new = run_with_services(work)
    typer.echo(f"retired: {old}\nnew:     {new}")
