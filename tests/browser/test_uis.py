"""The MLflow UI, the Prefect UI and the comparison report, opened in headless Chromium.

What a user looks for after a pipeline run: the runs, a learning curve and the `champion`
alias in MLflow; the training flow run, its stage tasks and a working link from its report
to the MLflow run in Prefect; every figure of ``comparison.html`` and the champion's name.

Debian's ``chromium`` and ``chromium-driver`` drive it (``.ci/run`` installs them); without
them on PATH these tests skip. On failure each test leaves a screenshot and the page
source in its tmp dir and prints their path.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import sys
import urllib.request

import pytest
import yaml

from conftest import (
    BIN_DIR,
    PROJECT_ROOT,
    copy_project,
    free_port,
    run,
    set_params,
    start,
    start_mlflow_server,
    stop,
    wait_for,
)

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
# Two slow cores: the React apps take a while to fetch and render.
WAIT_SECONDS = 60


# --------------------------------------------------------------------------- the browser


@pytest.fixture
def browser(request, tmp_path):
    """A fresh headless Chromium per test, so no UI state (MLflow's view choice) carries over."""
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip(
            "chromium and chromedriver are not on PATH "
            "(apt-get install chromium chromium-driver, as .ci/run does)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    # Explicit binaries: Selenium Manager would otherwise try to download a browser.
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1600,1000",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(WAIT_SECONDS)
    failed_before = request.session.testsfailed
    try:
        yield driver
    finally:
        # The call's report is logged before teardown: a new failure means this test failed.
        if request.session.testsfailed > failed_before:
            for number, handle in enumerate(driver.window_handles):
                driver.switch_to.window(handle)
                shot = tmp_path / f"failure-{number}.png"
                driver.save_screenshot(str(shot))
                (tmp_path / f"failure-{number}.html").write_text(driver.page_source)
                print(f"browser at {driver.current_url}: screenshot {shot}, page source beside")
        driver.quit()


def wait_visible(driver, xpath: str, what: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_SECONDS).until(
        ec.visibility_of_element_located((By.XPATH, xpath)), f"no {what} ({xpath})"
    )


def click(driver, xpath: str, what: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    element = WebDriverWait(driver, WAIT_SECONDS).until(
        ec.element_to_be_clickable((By.XPATH, xpath)), f"no clickable {what} ({xpath})"
    )
    element.click()
    return element


def text_is(text: str) -> str:
    return f"//*[normalize-space(text())='{text}']"


# --------------------------------------------------------------------------- the servers


@pytest.fixture(scope="module")
def mlflow_ui(tracked, tmp_path_factory):
    """`mlflow server` over a copy of the tiny pipeline's SQLite store: (url, run ids by model).

    A copy, so the run the Prefect test adds stays out of the session's store.
    """
    _, env, client = tracked
    base = tmp_path_factory.mktemp("mlflow-ui")
    source = sqlite3.connect(env["MLFLOW_TRACKING_URI"][len("sqlite:///") :])
    copy = sqlite3.connect(base / "backend.db")
    with source, copy:
        source.backup(copy)
        # New runs' artifacts go beside the copy, not into the session store's folder.
        copy.execute(
            "UPDATE experiments SET artifact_location = ?", ((base / "mlartifacts").as_uri(),)
        )
    source.close()
    copy.close()
    experiment = client.get_experiment_by_name("reuters-topics")
    runs = {
        r.info.run_name: r.info.run_id
        for r in client.search_runs([experiment.experiment_id])
        if r.info.run_name
    }
    proc, url = start_mlflow_server(base)
    try:
        yield url, runs
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def prefect_ui(tmp_path_factory):
    """`prefect server` with its UI (the session's `prefect_server` runs without one)."""
    base = tmp_path_factory.mktemp("prefect-ui")
    port = free_port()
    ui_url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PREFECT_HOME": str(base / "home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # The UI calls the API at this address (its default is port 4200).
        "PREFECT_API_URL": f"{ui_url}/api",
        "PREFECT_UI_URL": ui_url,
    }
    proc = start(
        [str(BIN_DIR / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env,
        base / "server.log",
    )

    def healthy():
        assert proc.poll() is None, (base / "server.log").read_text()
        try:
            with urllib.request.urlopen(f"{ui_url}/api/health", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    try:
        wait_for(healthy, 120, "prefect server (with UI) health")
        yield ui_url, env
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def flow_run(tracked, mlflow_ui, prefect_ui, tmp_path_factory) -> dict:
    """`python -m flows.training` against both servers on a copy of the tiny project.

    A new LSTM size retrains the LSTM only; the other stages show as skipped.
    """
    src, project_env, _ = tracked
    mlflow_url, _ = mlflow_ui
    ui_url, server_env = prefect_ui
    base = tmp_path_factory.mktemp("browser-flow")
    project = copy_project(src, base / "project")
    set_params(project, {"models.lstm.units": 7})
    env = {
        **project_env,
        "PREFECT_HOME": str(base / "prefect-home"),
        "PREFECT_API_URL": server_env["PREFECT_API_URL"],
        "PREFECT_UI_URL": ui_url,
        "MLFLOW_TRACKING_URI": mlflow_url,
    }
    proc = run(
        [sys.executable, "-m", "flows.training", "--project-dir", str(project)],
        PROJECT_ROOT,
        env,
    )
    # The flow's summary is the JSON object printed last.
    lines = proc.stdout.splitlines()
    start_line = max(i for i, line in enumerate(lines) if line == "{")
    return json.loads("\n".join(lines[start_line:]))


# --------------------------------------------------------------------------- the checks


def test_mlflow_ui_shows_runs_curve_and_champion(browser, mlflow_ui):
    import mlflow

    from rnnops.systems.tracking import run_url

    url, runs = mlflow_ui
    assert {"rnn", "lstm"} <= set(runs), runs
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(url)
    try:
        link = run_url(runs["lstm"])  # the link the training report gives
    finally:
        mlflow.set_tracking_uri(previous)

    # The run: its id, then its val_loss chart (the search box narrows the grid to it).
    browser.get(link)
    wait_visible(browser, text_is(runs["lstm"]), "run id on the run page")
    click(browser, text_is("Model metrics"), "Model metrics tab")
    search = wait_visible(browser, "//input[@placeholder='Search metric charts']", "chart search")
    search.send_keys("val_loss")
    plot = (
        f"{text_is('val_loss')}/ancestor::*[.//*[local-name()='svg' and contains(@class, "
        "'main-svg')]][1]"
    )
    wait_visible(browser, plot + "//*[local-name()='g' and contains(@class, 'trace')]", "curve")

    # Its experiment: the runs table of the model-training view, one row per model.
    click(browser, "//a[normalize-space()='Runs']", "link to the experiment's runs")
    for name in ("rnn", "lstm"):
        wait_visible(browser, f"//a[normalize-space()='{name}']", f"run {name} in the table")
    wait_visible(browser, "//h2[normalize-space()='Runs'] | //h1[normalize-space()='Runs']", "Runs")
    genai = browser.find_elements("xpath", f"{text_is('Training runs')} | {text_is('Judges')}")
    assert not [e for e in genai if e.is_displayed()], "experiment opened in the GenAI view"

    # The registered model: its champion alias.
    browser.get(f"{url}/#/models/reuters-topics")
    wait_visible(
        browser,
        # "@ champion" may be several text nodes: match the innermost element's whole text.
        "//*[not(*) and contains(., '@') and contains(., 'champion')]",
        "@champion alias on the registered model",
    )


def test_prefect_ui_shows_flow_run_tasks_and_mlflow_link(browser, flow_run, prefect_ui, mlflow_ui):
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    ui_url, _ = prefect_ui
    mlflow_url, _ = mlflow_ui
    assert flow_run["stages"]["train@lstm"] and not flow_run["stages"]["train@rnn"], flow_run
    (mlflow_run,) = flow_run["mlflow_runs"]

    browser.get(f"{ui_url}/runs")
    click(browser, "//a[starts-with(normalize-space(), 'workspace @')]", "training flow run")

    # Its stage tasks: train@lstm ran, train@rnn was skipped and says so.
    click(browser, "//*[@role='tablist']/*[normalize-space()='Task Runs']", "Task Runs tab")
    for stage in ("train@lstm", "evaluate@lstm", "promote", "train@rnn"):
        wait_visible(browser, f"//a[normalize-space()='{stage}']", f"task {stage}")

    def row(stage: str) -> str:
        # The largest element around the task's link holding no other task's link.
        return browser.find_element(
            "xpath",
            f"//a[normalize-space()='{stage}']/ancestor::*"
            "[count(.//a[contains(@href, '/runs/task-run/')]) = 1][last()]",
        ).text

    assert "Skipped" in row("train@rnn"), row("train@rnn")
    assert "Skipped" not in row("train@lstm"), row("train@lstm")

    # The training report links the MLflow run, and the link opens it in the MLflow UI.
    click(browser, "//*[@role='tablist']/*[normalize-space()='Artifacts']", "Artifacts tab")
    click(browser, text_is("training-report"), "training-report artifact")
    link = wait_visible(
        browser,
        f"//a[starts-with(@href, '{mlflow_url}/') and contains(@href, '/runs/{mlflow_run}')]",
        "link to the MLflow run in the training report",
    )
    windows = set(browser.window_handles)
    link.click()
    WebDriverWait(browser, WAIT_SECONDS).until(ec.number_of_windows_to_be(len(windows) + 1))
    (new_window,) = set(browser.window_handles) - windows
    browser.switch_to.window(new_window)
    wait_visible(browser, text_is(mlflow_run), "the linked run's id in the MLflow UI")
    wait_visible(browser, text_is("lstm"), "the linked run's name")


def test_comparison_report_renders_with_figures_and_champion(browser, tracked):
    from selenium.webdriver.support.ui import WebDriverWait

    project, _, client = tracked
    name = yaml.safe_load((project / "params.yaml").read_text())["promotion"]["registered_model"]
    champion = client.get_model_version_by_alias(name, "champion")

    browser.get((project / "reports" / "comparison.html").as_uri())
    images = WebDriverWait(browser, WAIT_SECONDS).until(
        lambda d: d.execute_script(
            "const imgs = Array.from(document.images);"
            "return imgs.length && imgs.every(i => i.complete)"
            " ? imgs.map(i => [i.alt, i.naturalWidth]) : null;"
        ),
        "the report's images never finished loading",
    )
    assert images and all(width > 0 for _, width in images), images
    line = wait_visible(browser, "//p[starts-with(normalize-space(), 'Champion')]", "champion")
    assert f"{name} v{champion.version}" in line.text, line.text
