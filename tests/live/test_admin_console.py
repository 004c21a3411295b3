"""The admin console in a real headless Chromium (Debian's, through its chromedriver)."""

import http.client
import json
import os
import random
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service as ChromeService
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as shown
from selenium.webdriver.support.ui import Select, WebDriverWait

from scoresvc import create_app
from scoresvc.settings import Settings
from scoresvc.storage.database import open_database
from scoresvc.storage.repository import Repository
from tests.live.server import LiveServer
from tests.needs import lacking

TOKEN = "console-test-token-0123456789abcdefgh"
WRITER_TOKEN = "console-test-writer-0123456789abcdefgh"
# Where to find the browser; CI installs Debian's chromium and chromium-driver (.ci/run).
CHROMIUM = os.environ.get("SCORESVC_TEST_CHROMIUM") or shutil.which("chromium")
CHROMEDRIVER = os.environ.get("SCORESVC_TEST_CHROMEDRIVER") or shutil.which("chromedriver")
# Set to a path (docs/admin-console.png) to keep the level page's screenshot there, and the
# rules page's beside it (docs/admin-console-rules.png).
SCREENSHOT_VARIABLE = "SCORESVC_CONSOLE_SCREENSHOT"
CHEAT = 666_666
WAIT_SECONDS = 10


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """A headless Chromium; without one the test skips (fails in CI, which installs it)."""
    if not (CHROMIUM and CHROMEDRIVER):
        lacking(
            "no chromium or chromedriver on PATH: apt-get install chromium chromium-driver "
            "(or set SCORESVC_TEST_CHROMIUM and SCORESVC_TEST_CHROMEDRIVER)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in [
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--window-size=1440,900",
        "--lang=en-US",
    ]:
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=ChromeService(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture
def server(tmp_path) -> Iterator[LiveServer]:
    """A server with the admin API on, over a file with a few levels of plausible players."""
    url = f"sqlite:///{tmp_path}/scores.db"
    create_app(Settings(database_url=url)).close()
    database = open_database(url)
    repository = Repository(database)
    players = random.Random(2026)
    for level, count in [(1, 340), (2, 130), (3, 87), (7, 512), (12, 45)]:
        users = players.sample(range(1_000, 999_999), count)
        for user in users:
            repository.record_score(level, user, players.randint(1_000, 240_000))
    repository.record_score(2, CHEAT, 2_147_483_647)
    repository.record_score(3, CHEAT, 150_000)
    database.close()
    env = {"SCORESVC_ADMIN_TOKEN": TOKEN, "SCORESVC_WRITER_TOKEN": WRITER_TOKEN}
    server = LiveServer(tmp_path / "server.log", "--database", url, env=env).start()
    yield server
    server.kill()


def wait(browser: WebDriver):
    return WebDriverWait(browser, WAIT_SECONDS)


def rows(browser: WebDriver, table: str = "scores") -> list[tuple[str, str]]:
    """(rank, user) of each row of a table, as the page shows them (rank None: no ranks)."""
    # Read in one script: the page may redraw the table between two calls of the driver.
    found = browser.execute_script(
        "return [...document.querySelectorAll(arguments[0])]"
        ".map((row) => [row.dataset.rank || null, row.dataset.user])",
        f"#{table} tbody tr[data-user]",
    )
    return [tuple(row) for row in found]


def sign_in(browser: WebDriver, server: LiveServer, token: str) -> None:
    browser.get(f"http://127.0.0.1:{server.port}/admin/")
    browser.execute_script("sessionStorage.clear()")
    browser.refresh()
    field = wait(browser).until(shown.visibility_of_element_located((By.ID, "token")))
    field.clear()
    field.send_keys(token)
    browser.find_element(By.ID, "sign-in").click()


def confirm(browser: WebDriver) -> None:
    button = wait(browser).until(shown.element_to_be_clickable((By.ID, "confirm-ok")))
    button.click()
    wait(browser).until(shown.invisibility_of_element_located((By.ID, "confirm")))


def wait_for_rows(browser: WebDriver, predicate, table: str = "scores"):
    return wait(browser).until(lambda b: predicate(rows(b, table)) and rows(b, table))


def test_a_wrong_token_shows_a_clear_error(browser, server):
    sign_in(browser, server, "not-the-token-at-all-0123456789abcdef")
    error = wait(browser).until(shown.visibility_of_element_located((By.ID, "login-error")))
    assert "not accepted" in error.text
    assert "401" in error.text
    assert not browser.find_element(By.ID, "console").is_displayed()
    assert browser.execute_script("return sessionStorage.length") == 0


def test_sign_in_open_a_level_page_ban_unban_and_remove_a_score(browser, server, tmp_path):
    sign_in(browser, server, TOKEN)
    level_two = wait(browser).until(
        shown.element_to_be_clickable((By.CSS_SELECTOR, '#levels button[data-level="2"]'))
    )
    assert "131 players" in level_two.text
    assert [b.get_attribute("data-level") for b in levels(browser)] == ["1", "2", "3", "7", "12"]

    # Open the level: the first page, the cheat on top.
    level_two.click()
    first = wait_for_rows(browser, lambda found: len(found) == 100)
    assert first[0] == ("1", str(CHEAT))
    assert [rank for rank, _ in first] == [str(n) for n in range(1, 101)]
    assert "of 131" in browser.find_element(By.ID, "page-where").text
    keep_screenshot(browser, tmp_path)

    # Page on and back.
    browser.find_element(By.ID, "next-page").click()
    second = wait_for_rows(browser, lambda found: found and found[0][0] == "101")
    assert len(second) == 31
    assert not browser.find_element(By.ID, "next-page").is_enabled()
    browser.find_element(By.ID, "prev-page").click()
    wait_for_rows(browser, lambda found: found and found[0][0] == "1")

    # Ban the cheat: gone from the list, their places taken by the next players.
    ban_button(browser, CHEAT).click()
    confirm(browser)
    banned = wait_for_rows(browser, lambda found: str(CHEAT) not in {u for _, u in found})
    assert banned[0] == ("1", first[1][1])
    assert "130 players" in level_button(browser, 2).text
    assert server.request("GET", f"/{CHEAT}/login")[0] == 403
    assert str(CHEAT) not in server.request("GET", "/2/highscorelist")[1]
    assert "banned" in toast(browser)

    # The bans tab lists them; unban: back on top.
    tab(browser, "bans").click()
    ban_rows = wait_for_rows(browser, lambda found: len(found) == 1, table="bans")
    assert ban_rows[0][1] == str(CHEAT)
    browser.find_element(By.CSS_SELECTOR, f'#bans tr[data-user="{CHEAT}"] button.unban').click()
    wait(browser).until(lambda b: "Nobody is banned" in b.find_element(By.ID, "bans").text)
    tab(browser, "level").click()
    wait_for_rows(browser, lambda found: found and found[0] == ("1", str(CHEAT)))
    assert server.request("GET", f"/2/rank/{CHEAT}") == (200, "1")

    # Remove a score: asked first; cancelling changes nothing.
    victim = first[4][1]
    remove_button(browser, victim).click()
    browser.find_element(By.ID, "confirm-cancel").click()
    assert victim in {user for _, user in rows(browser)}
    remove_button(browser, victim).click()
    confirm(browser)
    removed = wait_for_rows(browser, lambda found: victim not in {u for _, u in found})
    assert len(removed) == 100
    assert server.request("GET", f"/2/rank/{victim}")[0] == 404
    assert "130 players" in level_button(browser, 2).text

    # Every change is in the audit log, newest first.
    tab(browser, "audit").click()
    audit = wait(browser).until(lambda b: audit_actions(b) if len(audit_actions(b)) == 3 else [])
    assert audit == ["delete score", "unban", "ban"]
    assert_no_console_errors(browser)


def test_the_rules_page_change_rules_a_conflict_a_new_season_and_a_past_one(
    browser, server, tmp_path
):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    sign_in(browser, server, TOKEN)
    wait(browser).until(shown.element_to_be_clickable((By.CSS_SELECTOR, "#levels button")))
    level_button(browser, 1).click()
    season_one = wait_for_rows(browser, lambda found: len(found) == 100)

    # The rules panel: the default rules, season 1 with its 340 players, times in UTC.
    browser.find_element(By.ID, "rules-toggle").click()
    panel = wait(browser).until(shown.visibility_of_element_located((By.ID, "rules-panel")))
    wait(browser).until(lambda b: text(b, "current-season") == "Season 1")
    summary = text(browser, "rules-summary")
    for words in ["highest first", "best score kept", "never reset", "players write"]:
        assert words in summary
    assert rule_values(browser) == {
        "order": "desc",
        "keep": "best",
        "writes": "players",
        "reset": "never",
        "timezone": "UTC",
        "min_score": "0",
        "max_score": "2147483647",
    }
    assert text(browser, "season-players") == "340"
    started = admin(server, "GET", "/admin/levels/1/rules")[1]["season_started"]
    assert text(browser, "season-started") == started[:19].replace("T", " ") + " UTC"
    assert "No past season yet" in browser.find_element(By.ID, "seasons").text
    assert browser.find_element(By.ID, "season-pick").get_attribute("disabled")
    assert not browser.find_element(By.ID, "save-rules").is_enabled()

    # Change two rules: only those are sent, and the API has them.
    rule_field(browser, "writes").select_by_value("server")
    set_input(browser, "rule-max_score", "250000")
    wait(browser).until(lambda b: text(b, "rules-changes") == "2 unsaved changes")
    browser.find_element(By.ID, "save-rules").click()
    assert "rules changed: writes, max_score" in toast(browser)
    wait(browser).until(lambda b: "server-only writes" in text(b, "rules-summary"))
    rules = admin(server, "GET", "/admin/levels/1/rules")[1]
    assert (rules["writes"], rules["max_score"], rules["order"]) == ("server", 250_000, "desc")
    audit = admin(server, "GET", "/admin/audit")[1]["entries"][0]
    assert (audit["action"], audit["level"]) == ("rules", 1)
    assert "writes players -> server" in audit["detail"]
    assert "order" not in audit["detail"]  # only what changed was sent

    # The order cannot change while season 1 has scores: the 409's reason is shown, as text.
    rule_field(browser, "order").select_by_value("asc")
    browser.find_element(By.ID, "save-rules").click()
    error = wait(browser).until(shown.visibility_of_element_located((By.ID, "rules-error")))
    assert "409" in error.text
    assert "current season has scores" in error.text
    assert admin(server, "GET", "/admin/levels/1/rules")[1]["order"] == "desc"
    # A bad time zone: the API's 400 reason, shown as text (never as markup).
    browser.find_element(By.ID, "revert-rules").click()
    set_input(browser, "rule-timezone", "<b>Mars</b>/Base")
    browser.find_element(By.ID, "save-rules").click()
    wait(browser).until(lambda b: "400" in text(b, "rules-error"))
    assert "unknown time zone '<b>Mars</b>/Base'" in text(browser, "rules-error")
    assert not panel.find_elements(By.CSS_SELECTOR, "#rules-error b")
    browser.find_element(By.ID, "revert-rules").click()
    assert rule_values(browser)["timezone"] == "UTC"

    # Start a new season: asked first; cancelling changes nothing.
    browser.find_element(By.ID, "new-season").click()
    wait(browser).until(shown.element_to_be_clickable((By.ID, "confirm-cancel"))).click()
    assert admin(server, "GET", "/admin/levels/1/rules")[1]["season"] == 1
    browser.find_element(By.ID, "new-season").click()
    assert "Start season 2" in text(browser, "confirm-title")
    confirm(browser)
    assert "Season 2 of level 1 started" in toast(browser)
    wait(browser).until(lambda b: text(b, "current-season") == "Season 2")
    wait(browser).until(lambda b: "No scores on this level" in b.find_element(By.ID, "scores").text)
    assert text(browser, "season-players") == "0"
    assert admin(server, "GET", "/admin/levels/1/rules")[1]["season"] == 2
    assert "0 players" in level_button(browser, 1).text

    # Season 2 is empty: now the order changes.
    rule_field(browser, "order").select_by_value("asc")
    browser.find_element(By.ID, "save-rules").click()
    wait(browser).until(lambda b: "lowest first" in text(b, "rules-summary"))
    assert admin(server, "GET", "/admin/levels/1/rules")[1]["order"] == "asc"
    assert not browser.find_element(By.ID, "rules-error").is_displayed()

    # A weekly reset in Berlin: the season now ends at the next Monday's 00:00 there, in UTC.
    rule_field(browser, "reset").select_by_value("weekly")
    set_input(browser, "rule-timezone", "Europe/Berlin")
    browser.find_element(By.ID, "save-rules").click()
    wait(browser).until(lambda b: "reset weekly (Europe/Berlin)" in text(b, "rules-summary"))
    ends = admin(server, "GET", "/admin/levels/1/rules")[1]["season_ends"]
    assert ends.endswith(("T22:00:00Z", "T23:00:00Z"))
    assert text(browser, "season-ends") == ends[:19].replace("T", " ") + " UTC"

    # The game's server posts to season 2 (writes: server); the page shows them, lowest first.
    for user, score in [(4711, 61_250), (815, 58_900), (90210, 64_075), (31337, 59_420)]:
        assert write_score(server, 1, user, score) == 200
    level_button(browser, 1).click()
    current = wait_for_rows(browser, lambda found: len(found) == 4)
    assert current == [("1", "815"), ("2", "31337"), ("3", "4711"), ("4", "90210")]

    # Pick season 1: its ordering as it ended, a page at a time; read-only.
    Select(browser.find_element(By.ID, "season-pick")).select_by_value("1")
    past = wait_for_rows(browser, lambda found: len(found) == 100 and found[0][1] != "815")
    assert past == season_one
    assert browser.find_element(By.ID, "season-notice").is_displayed()
    assert "Season 1" in text(browser, "season-notice-text")
    assert "340 players in season 1" in text(browser, "level-meta")
    assert not browser.find_elements(By.CSS_SELECTOR, "#scores button.remove")
    browser.find_element(By.ID, "next-page").click()
    page_two = wait_for_rows(browser, lambda found: found and found[0][0] == "101")
    api_page = admin(server, "GET", "/admin/levels/1/scores?from=101&season=1")[1]
    assert page_two == [(str(e["rank"]), str(e["user"])) for e in api_page["entries"]]
    assert "Places 101\u2013200 of 340" in text(browser, "page-where")

    # Export season 1: the CSV the API gives for it.
    browser.find_element(By.ID, "export").click()
    exported = wait(browser).until(lambda b: read_download(downloads / "level-1-season-1.csv"))
    assert exported == admin(server, "GET", "/admin/levels/1/export?season=1")[1]
    assert exported.count("\n") == 341

    # Back to the current season; the panel's table of past seasons opens one too.
    browser.find_element(By.ID, "current-season-back").click()
    wait_for_rows(browser, lambda found: found == current)
    assert not browser.find_element(By.ID, "season-notice").is_displayed()
    assert browser.find_element(By.ID, "season-pick").get_attribute("value") == "2"
    season_row = browser.find_element(By.CSS_SELECTOR, '#seasons tr[data-season="1"]')
    assert "340" in season_row.text
    season_row.find_element(By.CSS_SELECTOR, "button.view").click()
    wait_for_rows(browser, lambda found: found == season_one)
    assert browser.find_element(By.ID, "season-pick").get_attribute("value") == "1"
    browser.find_element(By.ID, "current-season-back").click()
    wait_for_rows(browser, lambda found: found == current)

    # The audit log has the rules and the season, level-wide (no user).
    tab(browser, "audit").click()
    wait(browser).until(lambda b: audit_actions(b) == ["rules", "rules", "season", "rules"])
    assert "—" in browser.find_element(By.CSS_SELECTOR, "#audit tbody tr").text
    tab(browser, "level").click()
    browser.find_element(By.ID, "reload-levels").click()
    wait_for_rows(browser, lambda found: found == current)
    wait(browser).until(shown.visibility_of_element_located((By.ID, "rules-panel")))
    wait(browser).until(lambda b: "4 players" in level_button(b, 1).text)
    browser.execute_script("document.getElementById('toast').hidden = true")
    browser.set_window_size(1440, 1060)  # the panel and the first rows below it
    try:
        keep_screenshot(browser, tmp_path, "rules")
    finally:
        browser.set_window_size(1440, 900)
    assert_no_console_errors(browser)


def test_a_token_refused_later_signs_the_console_out(browser, server):
    sign_in(browser, server, TOKEN)
    wait(browser).until(shown.element_to_be_clickable((By.CSS_SELECTOR, "#levels button")))
    browser.execute_script("sessionStorage.setItem('scoresvc-admin-token', 'stale')")
    browser.find_element(By.ID, "reload-levels").click()
    error = wait(browser).until(shown.visibility_of_element_located((By.ID, "login-error")))
    assert "401" in error.text


def levels(browser: WebDriver):
    return browser.find_elements(By.CSS_SELECTOR, "#levels button[data-level]")


def level_button(browser: WebDriver, level: int):
    return browser.find_element(By.CSS_SELECTOR, f'#levels button[data-level="{level}"]')


def ban_button(browser: WebDriver, user: int | str):
    return browser.find_element(By.CSS_SELECTOR, f'#scores tr[data-user="{user}"] button.ban')


def remove_button(browser: WebDriver, user: int | str):
    return browser.find_element(By.CSS_SELECTOR, f'#scores tr[data-user="{user}"] button.remove')


def tab(browser: WebDriver, name: str):
    return browser.find_element(By.CSS_SELECTOR, f'nav.tabs button[data-tab="{name}"]')


def toast(browser: WebDriver) -> str:
    return wait(browser).until(shown.visibility_of_element_located((By.ID, "toast"))).text


def audit_actions(browser: WebDriver) -> list[str]:
    return [cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "#audit .badge")]


def text(browser: WebDriver, element_id: str) -> str:
    return browser.find_element(By.ID, element_id).text


def rule_field(browser: WebDriver, name: str) -> Select:
    return Select(browser.find_element(By.ID, f"rule-{name}"))


def rule_values(browser: WebDriver) -> dict[str, str]:
    return browser.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('.field[data-rule]')]"
        ".map((field) => [field.dataset.rule, field.querySelector('input, select').value]))"
    )


def set_input(browser: WebDriver, element_id: str, value: str) -> None:
    field = browser.find_element(By.ID, element_id)
    field.clear()
    field.send_keys(value)


def admin(server: LiveServer, method: str, path: str) -> tuple[int, object]:
    """An admin API call with the token: (status, JSON, or text for a CSV)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request(method, path, headers={"Authorization": f"Bearer {TOKEN}"})
        response = connection.getresponse()
        body = response.read().decode()
        is_json = "json" in (response.getheader("Content-Type") or "")
        return response.status, json.loads(body) if is_json else body
    finally:
        connection.close()


def write_score(server: LiveServer, level: int, user: int, score: int) -> int:
    """A score posted by the game's own server (the trusted writer): the status."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request(
            "POST",
            f"/{level}/score?user={user}",
            body=str(score),
            headers={"Authorization": f"Bearer {WRITER_TOKEN}"},
        )
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def read_download(path: Path) -> str | None:
    """The downloaded file's text once Chromium has finished writing it."""
    if not path.exists() or path.with_name(path.name + ".crdownload").exists():
        return None
    time.sleep(0.05)
    return path.read_text()


def assert_no_console_errors(browser: WebDriver) -> None:
    # A Content-Security-Policy refusal or a script error would show here.
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    expected = [entry for entry in errors if "status of 40" in entry["message"]]
    assert errors == expected


def keep_screenshot(browser: WebDriver, tmp_path: Path, page: str = "") -> None:
    """A page as docs/operating.md shows it: the level page kept where SCORESVC_CONSOLE_SCREENSHOT
    says, another (page "rules") beside it, its name ending in -rules."""
    name = f"admin-console-{page}.png" if page else "admin-console.png"
    browser.save_screenshot(str(tmp_path / name))
    target = os.environ.get(SCREENSHOT_VARIABLE)
    if target:
        target_path = Path(target)
        if page:
            target_path = target_path.with_name(f"{target_path.stem}-{page}{target_path.suffix}")
        shutil.copyfile(tmp_path / name, target_path)
