"""The dashboard in a real headless Chromium against a real local stack with real runs.

Needs Debian's chromium and chromedriver (and selenium); skips without them, fails under
CI=true. Screenshots of the main pages land in test-artifacts/dashboard/; with
MLSTACK_DASHBOARD_SCREENSHOT=path a run's page is also saved there (docs/dashboard.png).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli, stack_up

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]
TOY = ROOT / "tests" / "pipelines" / "toy.py"
STACK = "it-dashboard"
WAIT = 30


def _run(ref: str, *args: str) -> dict[str, Any]:
    proc = run_cli("run", ref, "--stack", STACK, "--json", *args, timeout=300)
    return json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A local stack with a finished fan run, its cached rerun, a failed run, a deployment."""
    home = tmp_path_factory.mktemp("dashboard-home")
    with stack_up(home, STACK, f"name: {STACK}\nprovider: local\nttl: 4h\n") as up:
        first = _run(f"{TOY}:fan", "--param", "n=6")
        assert first.get("status") == "completed", first
        cached = _run(f"{TOY}:fan", "--param", "n=6")
        assert {s["status"] for s in cached["steps"].values()} == {"cached"}, cached
        diamond = _run(f"{TOY}:diamond")
        assert diamond.get("status") == "completed", diamond
        failed = _run(f"{TOY}:failing")
        assert failed.get("status") == "failed" or failed == {}, failed
        from runner.metadata.client import MetadataClient

        meta = up["outputs"]["metadata"]
        with MetadataClient(meta["url"], meta["token"]) as client:
            runs = client.list_runs(stack=STACK, pipeline="failing")
            client.create_deployment(
                "dash-endpoint", STACK, "toy-model", "3", endpoint_url="http://127.0.0.1:9/x",
                status="running", run_id=first["run_id"],
            )  # fmt: skip
        yield {
            **up, "first": first, "cached": cached, "diamond": diamond, "failed_run": runs[0].id
        }  # fmt: skip


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    chromium = shutil.which("chromium")
    driver_bin = shutil.which("chromedriver")
    if not chromium or not driver_bin:
        pytest.skip("chromium and chromedriver are not installed (apt-get install chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--window-size=1400,1000", "--disable-dev-shm-usage"):  # fmt: skip
        options.add_argument(flag)
    profile = tmp_path_factory.mktemp("chromium-profile")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(driver_bin), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def logged_in(stack: dict[str, Any], browser: Any) -> dict[str, Any]:
    """Log the browser in through `mlstack ui --no-browser`'s one-time URL."""
    out = run_cli("ui", STACK, "--no-browser", check=True).stdout
    url = next(line for line in out.splitlines() if line.startswith("http"))
    browser.get(url)
    return {"url": url, "base": stack["outputs"]["metadata"]["url"]}


def _wait(browser: Any) -> Any:
    """A wait that retries when the page re-renders under a found element."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, WAIT, ignored_exceptions=(StaleElementReferenceException,))


def wait_for(browser: Any, css: str, count: int = 1) -> list[Any]:
    from selenium.webdriver.common.by import By

    def found(driver: Any) -> list[Any] | bool:
        nodes = driver.find_elements(By.CSS_SELECTOR, css)
        return nodes if len(nodes) >= count else False

    result: list[Any] = _wait(browser).until(found)
    return result


def wait_text(browser: Any, css: str, text: str) -> Any:
    from selenium.webdriver.common.by import By

    def found(driver: Any) -> Any:
        for node in driver.find_elements(By.CSS_SELECTOR, css):
            if text in node.text:
                return node
        return False

    return _wait(browser).until(found)


def click_text(browser: Any, css: str, text: str) -> None:
    """Click the element holding `text`, finding it again if a re-render replaced it."""

    def clicked(driver: Any) -> bool:
        wait_text(driver, css, text).click()
        return True

    _wait(browser).until(clicked)


SHOTS = ROOT / "test-artifacts" / "dashboard"  # kept after the run (CI's artifacts), git-ignored


def shot(browser: Any, tmp_path: Path, name: str) -> None:
    """Save a screenshot of the page as ``test-artifacts/dashboard/NAME.png``."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SHOTS / f"{name}.png")), name


def test_login_sets_a_strict_httponly_cookie_and_no_secret_stays_in_a_url(
    stack: dict[str, Any], browser: Any, logged_in: dict[str, Any]
) -> None:
    token = stack["outputs"]["metadata"]["token"]
    code = logged_in["url"].rsplit("code=", 1)[1]
    assert token not in logged_in["url"]
    assert browser.current_url == f"{logged_in['base']}/ui/"  # redirected, code gone
    cookies = {c["name"]: c for c in browser.get_cookies()}
    session = cookies["mlstack_session"]
    assert session["httpOnly"] is True and session["sameSite"] == "Strict"
    assert token not in session["value"]
    history = browser.execute_cdp_cmd("Page.getNavigationHistory", {})
    urls = [entry["url"] for entry in history["entries"]]
    assert urls and not any(token in u or code in u for u in urls), urls
    assert token not in browser.page_source
    assert browser.execute_script("return document.cookie") == ""  # HttpOnly: no script sees it
    # The code is single use: a second visit is refused.
    with pytest.raises(urllib.error.HTTPError) as again:
        urllib.request.urlopen(logged_in["url"], timeout=10)
    assert again.value.code == 401
    server_log = stack["home"] / "stacks" / STACK / "logs" / "metadata.log"
    assert server_log.is_file()
    assert token not in server_log.read_text() and code not in server_log.read_text()


def test_api_rejects_requests_without_token_or_cookie(stack: dict[str, Any]) -> None:
    base = stack["outputs"]["metadata"]["url"]
    step_id = stack["first"]["steps"]["numbers"]["outputs"]["output"]["producer_step_id"]
    for path in ("/runs", f"/runs/{stack['first']['run_id']}", f"/steps/{step_id}/log",
                 "/deployments", "/pipelines", "/artifacts"):  # fmt: skip
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(base + path, timeout=10)
        assert refused.value.code == 401, path
    # A forged cookie is no session, and a cookie never authorizes a write.
    req = urllib.request.Request(base + "/ui/login-codes", method="POST", data=b"")
    req.add_header("Cookie", "mlstack_session=forged")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=10)
    assert refused.value.code == 401
    # The static page is served to anyone and says nothing about the stack.
    with urllib.request.urlopen(base + "/ui/", timeout=10) as resp:
        page = resp.read().decode()
    assert STACK not in page and stack["first"]["run_id"] not in page
    unknown = run_cli("ui", "no-such-stack", "--no-browser")
    assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1 and not unknown.stdout


def test_runs_list_and_a_run_dag_with_statuses(
    stack: dict[str, Any], browser: Any, logged_in: dict[str, Any], tmp_path: Path
) -> None:
    first = stack["first"]["run_id"]
    browser.get(f"{logged_in['base']}/ui/#/runs")
    rows = wait_for(browser, "#runs-body tr[data-run]", 3)
    assert {r.get_attribute("data-run") for r in rows} >= {first, stack["cached"]["run_id"]}
    # Where each run's driver ran (this machine: no MLSTACK_HOSTNAME here).
    wait_text(browser, f'#runs-body tr[data-run="{first}"] td.host', socket.gethostname())
    shot(browser, tmp_path, "runs")
    # The filter narrows the list to one pipeline's runs.
    browser.get(f"{logged_in['base']}/ui/#/runs?pipeline=failing")
    rows = wait_for(browser, "#runs-body tr[data-run]")
    wait_text(browser, "#status", "1 runs")
    assert (
        browser.find_element("css selector", "#runs-body tr").get_attribute("data-run")
        == (stack["failed_run"])
    )
    browser.get(f"{logged_in['base']}/ui/#/run/{first}")
    wait_text(browser, "#run-header p", f"driven from {socket.gethostname()}")
    nodes = wait_for(browser, "#dag g.node", 5)
    assert {n.get_attribute("data-step"): n.get_attribute("data-status") for n in nodes} == {
        name: "completed" for name in ("numbers", "bounds", "total", "double", "report")
    }
    edges = {e.get_attribute("data-edge") for e in wait_for(browser, "#dag path.edge", 6)}
    assert edges == {
        "numbers->bounds", "numbers->total", "numbers->double",
        "bounds->report", "total->report", "double->report",
    }  # fmt: skip
    bars = wait_for(browser, "#timeline g.bar", 5)
    spans = {b.get_attribute("data-step"): (int(b.get_attribute("data-start")),
             int(b.get_attribute("data-end"))) for b in bars}  # fmt: skip
    assert all(start <= end for start, end in spans.values())
    assert spans["numbers"][1] <= spans["report"][0]  # report starts after its upstream ended
    assert wait_text(browser, "#params", "n").text
    browser.get(f"{logged_in['base']}/ui/#/run/{first}/report")
    wait_text(browser, "#io a.lineage-producer", "producer")
    shot(browser, tmp_path, "run")
    target = os.environ.get("MLSTACK_DASHBOARD_SCREENSHOT")
    if target:
        browser.save_screenshot(target)


def test_diamond_dag_has_four_nodes_four_edges_and_overlapping_middle_steps(
    stack: dict[str, Any], browser: Any, logged_in: dict[str, Any], tmp_path: Path
) -> None:
    browser.get(f"{logged_in['base']}/ui/#/run/{stack['diamond']['run_id']}")
    nodes = wait_for(browser, "#dag g.node", 4)
    names = {n.get_attribute("data-step") for n in nodes}
    assert len(nodes) == 4 and names == set(stack["diamond"]["steps"])
    edges = {e.get_attribute("data-edge") for e in wait_for(browser, "#dag path.edge", 4)}
    middle = sorted(names - {"numbers", "join"})
    assert edges == {f"numbers->{middle[0]}", f"numbers->{middle[1]}",
                     f"{middle[0]}->join", f"{middle[1]}->join"}  # fmt: skip
    bars = {b.get_attribute("data-step"): b for b in wait_for(browser, "#timeline g.bar", 4)}
    (s1, e1), (s2, e2) = (
        (int(bars[m].get_attribute("data-start")), int(bars[m].get_attribute("data-end")))
        for m in middle
    )
    assert s1 < e2 and s2 < e1  # the two middle steps ran at the same time
    shot(browser, tmp_path, "diamond")


def test_failed_step_shows_failed_with_its_log(
    stack: dict[str, Any], browser: Any, logged_in: dict[str, Any], tmp_path: Path
) -> None:
    browser.get(f"{logged_in['base']}/ui/#/run/{stack['failed_run']}/explode")
    node = wait_for(browser, '#dag g.node[data-step="explode"]')[0]
    assert node.get_attribute("data-status") == "failed"
    log = wait_text(browser, "#step-log", "about to fail")
    assert "ValueError" in log.text
    shot(browser, tmp_path, "failed-step")


def test_a_running_steps_log_grows_on_screen(
    stack: dict[str, Any], browser: Any, logged_in: dict[str, Any]
) -> None:
    """A step recorded as running with a log in the artifact store that is still being written
    (as a live-logging step does): the panel follows it by offset."""
    from runner.metadata.client import MetadataClient

    root = Path(stack["outputs"]["artifact_store"]["uri"].removeprefix("file://"))
    log = root / "logs" / "dashboard-live" / "grow.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("first line\n")
    meta = stack["outputs"]["metadata"]
    with MetadataClient(meta["url"], meta["token"]) as client:
        run = client.create_run("live", STACK)
        step = client.create_step(run.id, "grow", status="running")
        client.update_step(step.id, log_uri=log.as_uri())
        browser.get(f"{logged_in['base']}/ui/#/run/{run.id}/grow")
        wait_text(browser, "#step-log", "first line")
        with log.open("a") as fh:
            fh.write("second line\n")
        wait_text(browser, "#step-log", "second line")
        assert browser.find_element("css selector", "#step-log").text.count("first line") == 1
        client.update_step(step.id, status="completed")
        client.update_run(run.id, status="completed")


def test_cached_step_links_to_the_run_it_reused_and_lineage_leads_to_the_producer(
    stack: dict[str, Any], browser: Any, logged_in: dict[str, Any]
) -> None:
    first, cached = stack["first"]["run_id"], stack["cached"]["run_id"]
    browser.get(f"{logged_in['base']}/ui/#/run/{cached}/total")
    nodes = wait_for(browser, "#dag g.node", 5)
    assert {n.get_attribute("data-status") for n in nodes} == {"cached"}
    click_text(browser, "#cached-from a", "")
    wait_text(browser, "#run-header", first[:10])
    assert browser.current_url.endswith(f"#/run/{first}/total")
    # From report's inputs, the lineage link of `total_value` leads to the producing step.
    browser.get(f"{logged_in['base']}/ui/#/run/{first}/report")
    wait_text(browser, "#io a.lineage-producer", "producer total")
    materializer = '#io tr[data-direction="input"] td:nth-child(6)'
    assert _wait(browser).until(lambda d: d.find_element("css selector", materializer).text)
    click_text(browser, "#io a.lineage-producer", "producer total")
    wait_text(browser, "#step-detail h3", "Step total")
    assert browser.current_url.endswith(f"#/run/{first}/total")
    # total's output names its consumer, report.
    wait_text(browser, "#io a.lineage-consumer", "consumer report")


def test_deployments_panel_shows_the_endpoint(
    stack: dict[str, Any], browser: Any, logged_in: dict[str, Any], tmp_path: Path
) -> None:
    browser.get(f"{logged_in['base']}/ui/#/deployments")
    row = wait_text(browser, "#deployments-body tr", "dash-endpoint")
    assert "http://127.0.0.1:9/x" in row.text and "toy-model" in row.text
    assert "running" in row.text and stack["first"]["run_id"][:10] in row.text
    shot(browser, tmp_path, "deployments")
    browser.get(f"{logged_in['base']}/ui/#/stacks")
    assert wait_text(browser, "#stacks-body tr", STACK)


def test_stacks_page_shows_provider_ttl_countdown_health_and_spend(
    stack: dict[str, Any], browser: Any, logged_in: dict[str, Any], tmp_path: Path
) -> None:
    status = json.loads(run_cli("status", STACK, "--json", check=True).stdout)
    browser.get(f"{logged_in['base']}/ui/#/stacks")
    wait_text(browser, f'#stacks-body tr[data-stack="{STACK}"] td.provider', "local")
    row = f'#stacks-body tr[data-stack="{STACK}"]'

    def read_cells(driver: Any) -> dict[str, str]:  # the row, re-found if a poll redrew it
        return {
            c: driver.find_element("css selector", f"{row} td.{c}").text
            for c in ("ttl", "health", "spend")
        }

    cells: dict[str, str] = _wait(browser).until(read_cells)
    assert cells["ttl"].endswith("left") and cells["ttl"].startswith("3h"), cells
    assert cells["health"] == f"{len(status['services'])} healthy", cells
    assert cells["spend"] == "$0.00", cells  # a local stack costs nothing, via the same code path
    # The countdown ticks between polls.
    first = cells["ttl"]
    _wait(browser).until(
        lambda d: (
            d.find_element("css selector", f'#stacks-body tr[data-stack="{STACK}"] td.ttl').text
            != first
        )
    )
    for service in status["services"]:
        wait_text(browser, f'#services tr[data-service="{service["name"]}"]', service["state"])
    shot(browser, tmp_path, "stacks")


def test_a_run_links_to_its_mlflow_run(
    stack: dict[str, Any], browser: Any, logged_in: dict[str, Any]
) -> None:
    first = stack["first"]["run_id"]
    browser.get(f"{logged_in['base']}/ui/#/run/{first}")
    link = wait_for(browser, "#mlflow a")[0]
    tracker = stack["outputs"]["tracker"]["uri"].rstrip("/")
    assert link.get_attribute("href") == f"{tracker}/#/runs/{link.text}"
    with urllib.request.urlopen(
        f"{tracker}/api/2.0/mlflow/runs/get?run_id={link.text}", timeout=10
    ) as resp:  # the linked run is the run's own, in the stack's MLflow
        tags = {t["key"]: t["value"] for t in json.loads(resp.read())["run"]["data"]["tags"]}
    assert tags["mlstack.run_id"] == first
