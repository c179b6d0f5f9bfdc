"""Real-browser harness: one Jupyter server (JupyterLab, Notebook 7 and Voilà on the same port)
and one headless Chromium per test session.

Chromium is Debian's (/usr/bin/chromium, or $NBX_CHROMIUM), launched by path; we never run
`playwright install`. Without it the tests skip with the reason; under CI (CI=true) they fail.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("NBX_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic", "--disable-dev-shm-usage",
]
IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                       "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
}
# Console messages that are not ours (e.g. a missing favicon); anything else fails a test.
BENIGN_CONSOLE = ("favicon", "Failed to load resource: the server responded with a status of 404")


def _unavailable(reason: str):
    if IN_CI:
        pytest.fail(f"browser tests cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class JupyterServer:
    url: str
    token: str
    root: Path
    runtime: Path
    process: subprocess.Popen
    log: Path
    known_kernels: set[str] = field(default_factory=set)

    def api(self, path: str, method: str = "GET"):
        request = urllib.request.Request(f"{self.url}{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def page_url(self, app: str, path: str) -> str:
        prefix = {"lab": "lab/tree", "lab-vit": "lab/workspaces/nbx-vit/tree", "notebook": "notebooks",
                  "voila": "voila/render"}[app]
        return f"{self.url}/{prefix}/{path}?token={self.token}"

    def kernels(self) -> list[str]:
        return [k["id"] for k in self.api("/api/kernels")]

    def shutdown_kernels(self) -> None:
        for kernel in self.kernels():
            with contextlib.suppress(Exception):
                self.api(f"/api/kernels/{kernel}", method="DELETE")

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not (Path(CHROMIUM).exists() and os.access(CHROMIUM, os.X_OK)):
        _unavailable(f"Chromium not found at {CHROMIUM} (apt-get install -y chromium, or `make browser`)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("the playwright Python package is not installed (pip install -e '.[dev]')")
    return CHROMIUM


@pytest.fixture(scope="session")
def jupyter_server(chromium_path, tmp_path_factory) -> JupyterServer:
    base = tmp_path_factory.mktemp("jupyter")
    dirs = {name: base / name for name in ("config", "data", "runtime", "settings", "workspaces",
                                           "ipython", "notebooks")}
    for path in dirs.values():
        path.mkdir()
    # no "build available/needed" check from the page: it runs node on the server for seconds
    (dirs["config"] / "labconfig").mkdir()
    (dirs["config"] / "labconfig" / "page_config.json").write_text(
        json.dumps({"buildCheck": False, "buildAvailable": False}))
    for name, value in LAB_SETTINGS.items():
        target = dirs["settings"] / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(value))
    env = dict(os.environ)
    env.update({
        "JUPYTER_CONFIG_DIR": str(dirs["config"]),
        "JUPYTER_DATA_DIR": str(dirs["data"]),
        "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
        "JUPYTERLAB_SETTINGS_DIR": str(dirs["settings"]),
        "JUPYTERLAB_WORKSPACES_DIR": str(dirs["workspaces"]),
        "IPYTHONDIR": str(dirs["ipython"]),
        # the kernelspec says "python": make it this interpreter
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")])),
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        "OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", "2"),
    })
    port, token = _free_port(), secrets.token_hex(16)
    log = base / "server.log"
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={dirs['notebooks']}",
        "--LabApp.expose_app_in_browser=True", "--JupyterNotebookApp.expose_app_in_browser=True",
        "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   cwd=dirs["notebooks"], start_new_session=True)
    server = JupyterServer(f"http://127.0.0.1:{port}", token, dirs["notebooks"], dirs["runtime"],
                           process, log)
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            pytest.fail(f"jupyter server exited ({process.returncode}):\n{server.log_tail()}")
        try:
            server.api("/api/status")
            break
        except Exception:
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"jupyter server did not start in 60 s:\n{server.log_tail()}")
            time.sleep(0.2)
    yield server
    process.terminate()  # the server shuts its kernels down
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


@pytest.fixture(scope="session")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


class Page:
    """A browser page whose console errors and uncaught exceptions are collected."""

    def __init__(self, browser):
        self.context = browser.new_context(viewport={"width": 1280, "height": 1000}, device_scale_factor=1)
        self.page = self.context.new_page()
        self.page.set_default_timeout(30_000)
        self.problems: list[str] = []
        self.benign: list[str] = []  # host-specific messages a front-end tolerates
        self.page.on("console", self._on_console)
        self.page.on("pageerror", self._on_page_error)

    def _on_page_error(self, error) -> None:
        if not any(b in str(error) for b in self.benign):
            self.problems.append(f"page error: {error}")

    def _on_console(self, message) -> None:
        if message.type != "error" or any(b in message.text for b in (*BENIGN_CONSOLE, *self.benign)):
            return
        url = (message.location or {}).get("url", "")
        if "Failed to load resource" in message.text and url and not url.startswith("http://127.0.0.1"):
            return  # an external resource of the host page (no network here); never ours
        if "Failed to load resource" in message.text and url.split("?")[0].endswith((".woff", ".woff2")):
            return  # a host page's font fetched before its login cookie was set (seen in Notebook 7)
        self.problems.append(f"console.error: {message.text} ({url})")

    def check(self, request, tmp_path_factory) -> None:
        """After a test: a screenshot when it failed; fail when the console had errors."""
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            folder = Path(os.environ.get("NBX_ARTIFACTS") or tmp_path_factory.mktemp("artifacts"))
            folder.mkdir(parents=True, exist_ok=True)
            shot = folder / f"{request.node.name}.png"
            try:
                self.page.screenshot(path=str(shot), full_page=True)
                print(f"screenshot of the failure: {shot}")
            except Exception as error:
                print(f"no screenshot: {error}")
        problems, self.problems[:] = list(self.problems), []
        assert not problems, "errors in the browser console:\n" + "\n".join(problems)

    def close(self) -> None:
        self.context.close()


@dataclass
class FrontEnd:
    """A notebook open in one front-end, with a probe on its kernel."""

    app: str
    browser_page: Page
    probe: object
    kernel: str

    @property
    def page(self):
        return self.browser_page.page


# Which front-end shows which notebook cells (see notebooks.py), and the test fixture using it.
APPS = {"lab": ("lab", ["CANVAS_CELL", "EXPLORER_CELL"]),
        "notebook": ("notebook7", ["EXPLORER_CELL"]),
        "voila": ("voila", ["CANVAS_CELL", "EXPLORER_CELL"]),
        "vit": ("lab_vit", ["VIT_EXPLORER_CELL"])}
# The front-end an entry of APPS opens in, where it is not its own name. A second JupyterLab page
# gets a workspace of its own: sharing the default one, each page may restore the other's notebook
# and join its kernel, and then logs "Comm not found" for the other page's widgets.
ROUTES = {"vit": "lab-vit"}


class Starting:
    """A front-end page whose loading has begun; ``ready()`` waits for it and probes its kernel."""

    def __init__(self, browser, server, folder: Path, app: str, cells: list[str]):
        from .harness import start_notebook, start_voila

        self.app, self.server = app, server
        self.page = Page(browser)
        path = f"{folder.name}/{write_notebook(folder / f'{app}.ipynb', cells)}"
        if app == "voila":
            # Voilà 0.5.13 tries to load Notebook 7's lab extension and fails (not ours)
            self.page.benign.append("RUNTIME-012")
            start_voila(self.page.page, server, path)
        else:
            if app == "notebook":
                # Notebook 7.6's own: its shortcuts plugin reads the schema of a plugin it has not
                # loaded (on every page load, with no widget at all) and a command of Lab's file browser.
                self.page.benign += ["Cannot read properties of undefined (reading 'schema')",
                                     "Command 'filebrowser:open-path' not registered"]
            start_notebook(self.page.page, server, ROUTES.get(app, app), path)
        self.frontend: FrontEnd | None = None

    def ready(self) -> FrontEnd:
        from .harness import KernelProbe, notebook_kernel

        if self.frontend is None:
            kernel = notebook_kernel(self.page.page)
            self.frontend = FrontEnd(self.app, self.page, KernelProbe(self.server, kernel), kernel)
        return self.frontend

    def close(self) -> None:
        if self.frontend is not None:
            self.frontend.probe.close()
        self.page.close()


@pytest.fixture(scope="session")
def frontends(browser, jupyter_server, request) -> dict[str, Starting]:
    """Every front-end this session's tests use, loading side by side from the start."""
    from . import notebooks

    folder = jupyter_server.root / "nbx"
    folder.mkdir(exist_ok=True)
    used = {name for item in request.session.items for name in getattr(item, "fixturenames", ())}
    started = {}
    try:
        for app, (fixture, cells) in APPS.items():
            if fixture in used and (app != "voila" or importlib.util.find_spec("voila")):
                started[app] = Starting(browser, jupyter_server, folder, app,
                                        [getattr(notebooks, cell) for cell in cells])
        yield started
    finally:
        for starting in started.values():
            starting.close()


def _use(frontends, app: str, request, tmp_path_factory):
    if app == "voila" and not importlib.util.find_spec("voila"):
        _unavailable("Voilà is not installed (pip install voila)")
    if app not in frontends:
        pytest.fail(f"front-end {app!r} was not started (fixture used indirectly?)")
    frontend = frontends[app].ready()
    yield frontend
    frontend.browser_page.check(request, tmp_path_factory)


@pytest.fixture
def lab(frontends, request, tmp_path_factory) -> FrontEnd:
    """JupyterLab showing the canvas cell and the Explorer (one page and kernel per session)."""
    yield from _use(frontends, "lab", request, tmp_path_factory)


@pytest.fixture
def notebook7(frontends, request, tmp_path_factory) -> FrontEnd:
    """Notebook 7 showing the Explorer."""
    yield from _use(frontends, "notebook", request, tmp_path_factory)


@pytest.fixture
def lab_vit(frontends, request, tmp_path_factory) -> FrontEnd:
    """JupyterLab showing the Explorer on a small timm ViT (random weights)."""
    yield from _use(frontends, "vit", request, tmp_path_factory)


@pytest.fixture
def voila(frontends, request, tmp_path_factory) -> FrontEnd:
    """Voilà rendering the canvas cell and the Explorer."""
    yield from _use(frontends, "voila", request, tmp_path_factory)


def write_notebook(path: Path, cells: list[str]) -> str:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path.name
