"""The web console at /console, driven in headless Chromium against a real `chronicle serve`,
projection daemon and worker (PostgreSQL and Redis real too). Each test saves a screenshot of
its view under artifacts/console/."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from eventstore.apikeys import create_key
from eventstore.pg import connect
from tests.e2e.servers import CLI, ROOT, service_env, serving, start_daemon, stop
from tests.waiting import eventually

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip(
        "the console's browser tests need Debian's chromium: apt-get install chromium chromium-driver, "
        "then make test",
        allow_module_level=True,
    )

from selenium.common.exceptions import (  # noqa: E402
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver import Chrome, ChromeOptions  # noqa: E402  (only once chromium is known here)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.integration]

ARTIFACTS = ROOT / "artifacts" / "console"
TENANT = "acme"


@pytest.fixture(scope="module")
def env(
    new_database: Callable[[], str], redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    return service_env(new_database(), redis_url, tmp_path_factory.mktemp("console-data"))


@pytest.fixture(scope="module")
def base_url(env: dict[str, str]) -> Iterator[str]:
    """The API, with the projection daemon (read models, seals) and one worker running."""
    daemon = start_daemon(env)
    worker = subprocess.Popen(
        [*CLI, "worker", "--name", "w-console", "--lease-seconds", "1.5", "--backoff-seconds", "0.05"],
        env=env,
        cwd=ROOT,
    )
    try:
        with serving(env) as url:
            yield url
    finally:
        stop(worker)
        stop(daemon)


@pytest.fixture(scope="module")
async def db(env: dict[str, str]) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(env["CHRONICLE_DATABASE_URL"])
    yield conn
    await conn.close()


@pytest.fixture(scope="module")
async def key(db: asyncpg.Connection) -> str:
    return await create_key(db, TENANT, "console-tester", ("admin",))


@pytest.fixture(scope="module")
async def client(base_url: str, key: str) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as found:
        yield found


@pytest.fixture(scope="module")
async def training(client: httpx.AsyncClient) -> str:
    """A three-epoch training run, started first so that it trains while other tests run."""
    return await submit(client, {"type": "train", "payload": {"epochs": 3, "seeds": 2, "batch_size": 64}})


@pytest.fixture(scope="module")
def browser(base_url: str, key: str) -> Iterator[Chrome]:
    """Headless Chromium with the console open and the key pasted into its form."""
    options = ChromeOptions()
    options.binary_location = str(CHROMIUM)  # both paths given: Selenium Manager downloads nothing
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1100"):
        options.add_argument(flag)
    driver = Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    try:
        driver.get(f"{base_url}/console")
        driver.find_element(By.ID, "api-key").send_keys(key, Keys.ENTER)
        wait(driver).until(lambda d: d.find_element(By.ID, "who").text == "key set")
        yield driver
    finally:
        driver.quit()


class ConsoleWait(WebDriverWait[Chrome]):
    """WebDriverWait whose timeout says what the console's message line said (its errors)."""

    def until(self, method: Any, message: str = "") -> Any:
        try:
            return super().until(method, message)
        except TimeoutException:
            said = self._driver.find_element(By.ID, "message").text
            raise AssertionError(f"not within {self._timeout} s; the console says {said!r}") from None


def wait(driver: Chrome, seconds: float = 15) -> ConsoleWait:
    """Polls until ``seconds``; an element the live board re-rendered between finding it and
    reading it (stale) is looked up again on the next poll, as a missing one is."""
    return ConsoleWait(
        driver,
        seconds,
        poll_frequency=0.05,
        ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
    )


def open_view(driver: Chrome, hash_: str) -> None:
    driver.execute_script("location.hash = arguments[0]", hash_)
    wait(driver).until(
        lambda d: d.find_element(By.ID, "view").get_attribute("data-view") == hash_.split("?")[0]
    )


def screenshot(driver: Chrome, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


async def submit(client: httpx.AsyncClient, body: dict[str, Any]) -> str:
    r = await client.post("/v1/tasks", json=body)
    assert r.status_code == 202, r.text
    return str(r.json()["task_id"])


async def status(client: httpx.AsyncClient, task_id: str) -> str:
    return str((await client.get(f"/v1/tasks/{task_id}")).json()["status"])


async def finished(client: httpx.AsyncClient, task_id: str, wanted: str = "completed") -> None:
    await eventually(lambda: status(client, task_id), lambda s: s == wanted, timeout=60, every=0.1)


async def test_a_task_submitted_while_the_board_is_open_shows_without_a_reload(
    browser: Chrome, client: httpx.AsyncClient, training: str
) -> None:
    """The board's SSE feed adds a task submitted through the API within seconds, on the same page."""
    open_view(browser, "board")
    wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#task-rows tr"))
    browser.execute_script("window.notReloaded = true")
    task_id = await submit(client, {"type": "sleep", "payload": {"seconds": 3}})
    wait(browser, 5).until(lambda d: "sleep" in d.find_element(By.ID, f"task-row-{task_id}").text)
    assert browser.execute_script("return window.notReloaded") is True
    # Its worker shows with a recent heartbeat while it holds the task.
    # (read inside the wait: the panel re-renders, and an element read after it may be stale)
    name, text = wait(browser).until(
        lambda d: (
            (row := d.find_element(By.CSS_SELECTOR, "#workers tr.worker")).get_attribute("data-worker"),
            row.text,
        )
    )
    assert name and "s ago" in text
    screenshot(browser, "board")
    # ... and the row follows the task as it moves on (a worker claimed it: the feed saw that too).
    wait(browser, 30).until(
        lambda d: d.find_element(By.ID, f"task-row-{task_id}").get_attribute("data-status") != "pending"
    )


async def test_bulk_retry_in_the_dead_letter_view_requeues_the_dead_lettered_tasks(
    browser: Chrome, client: httpx.AsyncClient
) -> None:
    """Retry all matching (type ``fail``) in the dead-letter view requeues each of them."""
    dead = [await submit(client, {"type": "fail", "max_attempts": 1}) for _ in range(2)]
    for task_id in dead:
        await finished(client, task_id, "dead_lettered")

    async def listed() -> set[str]:
        page = (await client.get("/v1/tasks", params={"status": "dead_lettered", "type": "fail"})).json()
        return {t["task_id"] for t in page["tasks"]}

    await eventually(listed, lambda found: set(dead) <= found, what="the board lists the dead letters")
    open_view(browser, "dead")
    browser.find_element(By.ID, "filter-type").send_keys("fail", Keys.ENTER)
    for task_id in dead:
        wait(browser).until(lambda d, t=task_id: d.find_element(By.ID, f"task-row-{t}"))
    screenshot(browser, "dead-letters")
    browser.find_element(By.ID, "bulk-retry").click()
    wait(browser).until(lambda d: d.find_element(By.ID, "view").get_attribute("data-bulk") == "retry:2")
    for task_id in dead:
        events = (await client.get(f"/v1/tasks/{task_id}/events")).json()
        assert "TaskRequeued" in [e["type"] for e in events]


async def test_time_travel_moves_through_a_tasks_versions_and_shows_each_change(
    browser: Chrome, client: httpx.AsyncClient
) -> None:
    """Moving the slider back shows the older state and what the version changed."""
    task_id = await submit(client, {"type": "echo", "payload": {"hello": "console"}})
    await finished(client, task_id)
    versions = len((await client.get(f"/v1/tasks/{task_id}/events")).json())
    open_view(browser, f"travel?stream=task-{task_id}")
    slider = wait(browser).until(lambda d: enabled(d.find_element(By.ID, "travel-version")))
    wait(browser).until(
        lambda d: d.find_element(By.ID, "view").get_attribute("data-version") == str(versions)
    )
    assert '"completed"' in browser.find_element(By.ID, "travel-state").text
    last = browser.find_element(By.CSS_SELECTOR, "#travel-diff li[data-path='status']").text
    assert last.startswith("changed status:") and last.endswith('→ "completed"')
    screenshot(browser, "time-travel")
    slider.send_keys(Keys.ARROW_LEFT)
    wait(browser).until(
        lambda d: d.find_element(By.ID, "view").get_attribute("data-version") == str(versions - 1)
    )
    assert '"completed"' not in browser.find_element(By.ID, "travel-state").text
    assert browser.find_element(By.ID, "travel-diff").text != last
    slider.send_keys(Keys.HOME)
    wait(browser).until(lambda d: d.find_element(By.ID, "view").get_attribute("data-version") == "1")
    added = browser.find_elements(By.CSS_SELECTOR, "#travel-diff li.diff-changed, #travel-diff li.diff-added")
    assert any(li.get_attribute("data-path") == "status" for li in added)
    assert '"pending"' in browser.find_element(By.ID, "travel-state").text


def enabled(element: WebElement) -> WebElement | None:
    return element if element.is_enabled() else None


async def test_the_stream_browser_shows_data_and_metadata_and_filters_by_type(
    browser: Chrome, client: httpx.AsyncClient
) -> None:
    """Every event of a stream with its metadata; the type filter keeps one type."""
    task_id = await submit(client, {"type": "echo", "payload": {"browse": True}})
    await finished(client, task_id)
    open_view(browser, f"streams?stream=task-{task_id}")
    rows = wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#stream-events tr.event"))
    assert len(rows) >= 4
    assert '"tenant_id": "acme"' in rows[0].text and '"browse": true' in rows[0].text
    screenshot(browser, "streams")
    Select(browser.find_element(By.ID, "event-type")).select_by_value("TaskCompleted")
    wait(browser).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#stream-events tr.event")) == 1)


async def test_agents_lists_the_tenants_agents(browser: Chrome, client: httpx.AsyncClient) -> None:
    """An agent registered through the API shows in the agents view (a read model: within its lag)."""
    body = {"agent_id": "console-agent", "name": "Console agent", "capabilities": ["gpu"]}
    assert (await client.post("/v1/agents", json=body)).status_code == 201
    open_view(browser, "agents")

    def listed(d: Chrome) -> WebElement | None:
        found = d.find_elements(By.CSS_SELECTOR, "#agents tr.agent[data-agent='console-agent']")
        if not found:
            d.execute_script("location.hash = 'agents?again=' + Date.now()")  # the registry may lag
        return found[0] if found else None

    agent = wait(browser, 20).until(listed)
    assert "gpu" in agent.text and "Console agent" in agent.text
    screenshot(browser, "agents")


async def test_a_training_run_is_charted_with_its_seed_stages(
    browser: Chrome, client: httpx.AsyncClient, training: str
) -> None:
    """Loss and accuracy over the run's three epochs, and each seed slot's stage per epoch."""
    await finished(client, training)

    async def epochs() -> list[dict[str, Any]]:
        r = await client.get(f"/v1/runs/{training}/epochs")
        return list(r.json()["items"]) if r.status_code == 200 else []

    await eventually(epochs, lambda found: len(found) == 3, what="the run's epochs on the read model")
    open_view(browser, f"runs?run={training}")
    chart = wait(browser).until(lambda d: d.find_element(By.ID, "run-chart"))
    for series in ("train_loss", "val_loss", "train_accuracy", "val_accuracy"):
        path = chart.find_element(By.CSS_SELECTOR, f"path.series-{series}")
        assert path.get_attribute("d").count("L") == 2  # three points
    assert {"epoch", "loss", "accuracy"} <= {t.text for t in chart.find_elements(By.TAG_NAME, "text")}
    assert len(browser.find_elements(By.CSS_SELECTOR, "#seed-stages rect.stage")) == 3 * 2
    screenshot(browser, "training-run")


async def test_audit_verify_checks_the_proof_in_the_browser(
    browser: Chrome, client: httpx.AsyncClient, env: dict[str, str]
) -> None:
    """Verify recomputes the Merkle root from the proof, matches it to the latest checkpoint and
    checks the checkpoint's Ed25519 signature with the log's public key; export downloads."""
    task_id = await submit(client, {"type": "echo"})
    await finished(client, task_id)
    stream = f"task-{task_id}"

    async def first_sealed() -> str | None:
        page = (await client.get("/v1/audit/events", params={"stream": stream})).json()
        if not page["events"]:
            return None
        event_id = str(page["events"][0]["event_id"])
        proof = await client.get(f"/v1/audit/proofs/{event_id}")
        return event_id if proof.status_code == 200 else None

    event_id = await eventually(first_sealed, what="the stream's first event sealed")
    printed = await asyncio.create_subprocess_exec(
        *CLI, "audit", "public-key", env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    vkey = (await printed.communicate())[0].decode().strip()
    open_view(browser, f"audit?stream={stream}")
    button = wait(browser).until(
        lambda d: d.find_element(By.CSS_SELECTOR, f"button.verify[data-event='{event_id}']")
    )
    vkey_input = browser.find_element(By.ID, "audit-vkey")
    vkey_input.clear()
    vkey_input.send_keys(vkey.splitlines()[-1])
    button.click()
    verdict = wait(browser).until(lambda d: d.find_element(By.ID, "verify-verdict"))
    checks = {
        row.find_elements(By.TAG_NAME, "td")[0].text: row.find_elements(By.TAG_NAME, "td")[1].text
        + " "
        + row.find_elements(By.TAG_NAME, "td")[2].text
        for row in browser.find_elements(By.CSS_SELECTOR, "#verify-result tr.check")
    }
    assert verdict.text.startswith("verified"), checks
    assert all(result.startswith("pass") for result in checks.values()), list(checks.values())[-1]
    screenshot(browser, "audit")
    browser.find_element(By.ID, "export-csv").click()
    wait(browser).until(lambda d: d.find_element(By.ID, "message").text.startswith("exported"))


async def test_a_tampered_proof_fails_in_the_browser(browser: Chrome, client: httpx.AsyncClient) -> None:
    """The browser's check can fail: a proof whose entry was altered does not verify."""
    page = (await client.get("/v1/audit/events", params={"limit": 1})).json()
    event_id = page["events"][0]["event_id"]
    proof = await eventually(
        lambda: client.get(f"/v1/audit/proofs/{event_id}"), lambda r: r.status_code == 200
    )
    checkpoint = (await client.get("/v1/audit/checkpoint")).text
    document = proof.json()
    document["entry"] = document["entry"][:-4] + ("AAAA" if document["entry"][-4:] != "AAAA" else "BBBB")
    open_view(browser, "audit")
    wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, "button.verify"))
    report = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "const [proof, note, id] = arguments;"
        "import('/console/static/proofs.js').then((m) => m.verifyInclusion(proof, note, id, ''))"
        ".then(done, (e) => done({error: String(e)}));",
        document,
        checkpoint,
        event_id,
    )
    assert report["ok"] is False
    assert [c["ok"] for c in report["checks"] if c["name"] == "path leads to the checkpoint root"] == [False]
