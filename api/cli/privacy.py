"""`chronicle forget SUBJECT` and `chronicle privacy rotate-master-key`: crypto-shredding."""

from __future__ import annotations

from typing import Annotated

import typer

from api.cli.runner import run_with_services
from core.settings import Settings
from eventstore.embedded import Services

__all__ = ["forget", "rotate_master_key"]


def forget(
    subject: Annotated[str, typer.Argument(help="the subject's id, as its events name it (e.g. a sender)")],
    tenant: Annotated[str | None, typer.Option(help="the tenant the subject belongs to")] = None,
    reason: Annotated[str, typer.Option(help="why, for the record")] = "erasure request",
) -> None:
    """Destroy a subject's data keys: its personal fields read as redacted from now on, in reads,
    replays, exports and read models. No stored event changes; every proof still verifies.

    Example: chronicle forget alice --tenant acme --reason "GDPR art. 17 request 4711"
    """
    from eventstore.pg import close_connection, connect
    from eventstore.privacy import Privacy

    async def work(settings: Settings, svc: Services) -> int:
        privacy = await Privacy.connect(svc.database_url, settings)
        conn = await connect(svc.database_url, application_name="chronicle forget")
        try:
            destroyed = await privacy.forget(conn, subject, tenant_id=tenant, reason=reason)
            # The destroyed keys' old row versions stay in the table's pages until vacuumed.
            await conn.execute("VACUUM subject_keys")
            return destroyed
        finally:
            await close_connection(conn)
            await privacy.close()

    destroyed = run_with_services(work)
    where = f" of tenant {tenant}" if tenant else ""
    if destroyed:
        typer.echo(f"forgot {subject}{where}: {destroyed} data key{'s' if destroyed != 1 else ''} destroyed")
    else:
        typer.echo(
            f"{subject}{where} had no live data key (nothing sealed, or forgotten before); recorded anyway"
        )


def rotate_master_key() -> None:
    """Wrap every data key with a new master key and remove the old key's file; no event changes.

    Example: chronicle privacy rotate-master-key
    """
    from eventstore.pg import create_pool
    from eventstore.privacy import MasterKeyFiles, SubjectKeys

    async def work(settings: Settings, svc: Services) -> tuple[list[str], str, int]:
        pool = await create_pool(svc.database_url, 1)
        try:
            return await SubjectKeys(pool, MasterKeyFiles(settings.master_key_path)).rotate_master()
        finally:
            await pool.close()

    old, new, rewrapped = run_with_services(work)
    retired = ", ".join(old) or "none"
    typer.echo(f"master key {new} now wraps {rewrapped} data keys (retired: {retired})")
