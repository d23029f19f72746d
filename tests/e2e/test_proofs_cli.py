"""Proofs from the command line, end to end: seal, prove an event and a consistency, check both
offline (with the CLI and with the ten-line script of docs/compliance.md, which imports only
hashlib and cryptography), verify the log, rotate the key, and still check the old proofs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.test_cli import chronicle, sample

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def env(
    new_database: Callable[[], str], redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    found = {
        "CHRONICLE_DATABASE_URL": new_database(),
        "CHRONICLE_REDIS_URL": redis_url,
        "CHRONICLE_DATA_DIR": str(tmp_path_factory.mktemp("data")),
        "CHRONICLE_LOG_ORIGIN": "example.org/chronicle",
        "CHRONICLE_LOG_FORMAT": "json",
    }
    sample(found)
    return found


def exported(env: dict[str, str], tmp_path: Path) -> list[dict[str, str]]:
    chronicle("export", "--out", str(tmp_path / "log.jsonl"), env=env)
    return [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]


def offline_script() -> str:
    """The script docs/compliance.md shows an auditor."""
    text = (ROOT / "docs" / "compliance.md").read_text()
    match = re.search(r"<!-- offline-verifier -->\n```python\n(.*?)```", text, re.S)
    assert match, "docs/compliance.md has no offline verifier script"
    return match.group(1)


def test_prove_check_verify_and_rotate(env: dict[str, str], tmp_path: Path) -> None:
    sealed = chronicle("audit", "seal", env=env).stdout
    assert "sealed 9 events" in sealed
    vkey = chronicle("audit", "public-key", env=env).stdout.strip()
    assert vkey.startswith("example.org/chronicle+")
    events = exported(env, tmp_path)
    ids = [e["event_id"] for e in events]

    proof = tmp_path / "proof.json"
    chronicle("audit", "prove", ids[4], "--out", str(proof), env=env)
    checked = chronicle("audit", "check", str(proof), "--public-key", vkey, env={})
    assert (
        f"verified: event {ids[4]}" in checked.stdout
        and "is entry 4 of example.org/chronicle at size 9" in checked.stdout
    )

    # the auditor's own ten lines, with nothing of Chronicle's importable
    script = tmp_path / "verify_proof.py"
    script.write_text(offline_script())
    ran = subprocess.run(
        [sys.executable, "-I", str(script), vkey, str(proof)], capture_output=True, text=True, cwd=tmp_path
    )
    assert ran.returncode == 0 and ran.stdout.startswith("OK"), ran.stdout + ran.stderr

    # a forged proof fails both ways, with one line
    forged = json.loads(proof.read_text()) | {"index": 3}
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    bad = chronicle(
        "audit", "check", str(tmp_path / "forged.json"), "--public-key", vkey, env={}, check=False
    )
    assert bad.returncode == 1 and bad.stderr.startswith("chronicle: error: NOT VERIFIED:")
    ran = subprocess.run(
        [sys.executable, "-I", str(script), vkey, str(tmp_path / "forged.json")],
        capture_output=True,
        text=True,
    )
    assert ran.returncode != 0 and "FAIL" in ran.stderr

    verified = chronicle("audit", "verify", "--all", "--public-key", vkey, env=env)
    assert "9 events, 9 sealed; 1 checkpoints checked" in verified.stdout
    stream = events[4]["stream_id"]
    length = sum(e["stream_id"] == stream for e in events)
    one = chronicle("audit", "verify", stream, "--public-key", vkey, env=env)
    assert f"{length} events, {length} sealed" in one.stdout

    # rotation: new checkpoints use the new key; the old proof still checks with the old key
    rotated = chronicle("audit", "rotate-key", env=env).stdout
    new_vkey = rotated.split("new:")[1].strip()
    assert new_vkey != vkey and vkey in rotated
    sample(env)
    assert "sealed 9 events" in chronicle("audit", "seal", env=env).stdout
    assert "verified" in chronicle("audit", "check", str(proof), "--public-key", vkey, env={}).stdout
    consistency = tmp_path / "consistency.json"
    chronicle("audit", "prove", "--consistency", "9", "18", "--out", str(consistency), env=env)
    both = chronicle(
        "audit", "check", str(consistency), "--public-key", vkey, "--public-key", new_vkey, env={}
    )
    assert "is a prefix of the log at size 18" in both.stdout
    everything = chronicle(
        "audit", "verify", "--all", "--public-key", vkey, "--public-key", new_vkey, env=env
    )
    assert "18 events, 18 sealed; 2 checkpoints checked" in everything.stdout
    listed = chronicle("audit", "public-key", "--all", env=env).stdout
    assert f"{vkey}  (retired" in listed and new_vkey in listed


def test_bad_input_is_one_line(env: dict[str, str], tmp_path: Path) -> None:
    missing = chronicle("audit", "prove", "not-a-uuid", env=env, check=False)
    assert (
        missing.returncode == 2
        and missing.stderr.strip() == "chronicle: error: EVENT_ID 'not-a-uuid' is not a UUID"
    )
    unknown = chronicle("audit", "prove", "00000000-0000-0000-0000-000000000000", env=env, check=False)
    assert unknown.returncode == 2 and "no event has the id" in unknown.stderr
    key = chronicle(
        "audit", "check", str(tmp_path / "none.json"), "--public-key", "x+1+2", env={}, check=False
    )
    assert key.returncode == 2 and key.stderr.startswith("chronicle: error:")
