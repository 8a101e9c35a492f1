"""The report in real headless Chromium: no JavaScript errors, no network, every figure drawn,
the verdict table holding the study's own numbers.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON
messages ending in NUL on file descriptors 3 and 4), so the test needs no driver package.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_report import BASELINE, BEST, FINAL_TEST, TRIALS, build_study, final_record, options

from hpo.mnist import Mnist
from hpo.report import build_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Parallel coordinates draw with WebGL; without a GPU that is SwiftShader, which Chromium
    # now runs only when asked (otherwise a deprecation warning, and later no WebGL at all).
    "--enable-unsafe-swiftshader",
]
if CHROMIUM is None and os.environ.get("CI"):  # the real-browser check must not vanish in CI
    raise RuntimeError("chromium is not installed; CI installs it, so this is a broken setup")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install chromium); CI installs it"
)


class DevTools:
    """The few DevTools calls this test needs, on one page, collecting every event."""

    def __init__(self, executable: str, profile: Path) -> None:
        to_chrome, self._write = os.pipe()
        self._read, from_chrome = os.pipe()

        def wire() -> None:  # in the child: Chromium reads commands on fd 3, answers on fd 4
            a, b = os.dup(to_chrome), os.dup(from_chrome)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [
                executable,
                *FLAGS,
                "--remote-debugging-pipe",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            preexec_fn=wire,
            process_group=0,  # its helpers too, so that close() can end them all
            close_fds=False,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome)
        os.close(from_chrome)
        self.events: list[dict[str, Any]] = []
        self._buffer, self._id, self.session = b"", 0, ""

    def call(self, method: str, params: dict[str, Any] | None = None, timeout: float = 30) -> Any:
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if self.session:
            message["sessionId"] = self.session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._next(timeout)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 30) -> None:
        while not any(e.get("method") == method for e in self.events):
            self.events.append(self._next(timeout))

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return result["result"].get("value")

    def _next(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read], [], [], left)[0]:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise EOFError("chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def close(self) -> None:
        # The whole group: a helper process left writing into the profile made its removal
        # fail now and then ("Directory not empty").
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(self.proc.pid, 0)  # any helper still alive?
            except ProcessLookupError:
                break
            time.sleep(0.05)
        os.close(self._write)
        os.close(self._read)


@pytest.fixture
def browser() -> Iterator[DevTools]:
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory(prefix="hpo-chromium-") as profile:
        tools = DevTools(CHROMIUM, Path(profile))
        try:
            target = tools.call("Target.createTarget", {"url": "about:blank"})
            attached = tools.call(
                "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
            )
            tools.session = attached["sessionId"]
            for domain in ("Runtime", "Log", "Network", "Page"):
                tools.call(f"{domain}.enable")
            yield tools
        finally:
            tools.close()


def open_page(tools: DevTools, path: Path) -> None:
    tools.call("Page.navigate", {"url": path.resolve().as_uri()})
    tools.wait_for("Page.loadEventFired")
    # Plotly draws from a promise after load: wait until every figure has its SVG.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not tools.evaluate(
        "[...document.querySelectorAll('.plotly-graph-div')]"
        ".every(d => d.querySelector('.main-svg'))"
    ):
        time.sleep(0.2)


def errors(events: list[dict[str, Any]]) -> list[str]:
    out = []
    for e in events:
        method, params = e.get("method"), e.get("params", {})
        if method == "Runtime.exceptionThrown":
            out.append(json.dumps(params["exceptionDetails"])[:500])
        elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            out.append(json.dumps(params["args"])[:500])
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            out.append(params["entry"]["text"][:500])
    return out


VERDICT_CELLS = """[...document.querySelectorAll('#verdict-table td[data-role]')].map(td => ({
    metric: td.parentElement.dataset.metric, role: td.dataset.role, trial: td.dataset.trial,
    value: td.dataset.value, text: td.querySelector('.v') ? td.querySelector('.v').textContent
    : td.textContent}))"""
FIGURES = """[...document.querySelectorAll('.plotly-graph-div')].map(d => ({id: d.id,
    svg: d.querySelectorAll('.main-svg').length, traces: (d.data || []).length,
    drawn: d.querySelectorAll('.main-svg path, .main-svg rect, canvas').length}))"""

# Each log axis of each figure: its range (log10 units), its drawn labels and their boxes.
LOG_AXES = """[...document.querySelectorAll('.plotly-graph-div')].flatMap(d =>
    Object.entries(d._fullLayout).filter(([k, a]) => /^[xy]axis\\d*$/.test(k) && a.type === 'log')
    .map(([k, a]) => {
      const labels = [...d.querySelectorAll(`.${a._id}tick text`)];
      return {figure: d.id, axis: k, range: a.range, labels: labels.map(t => t.textContent),
        boxes: labels.map(t => { const r = t.getBoundingClientRect();
                                 return [r.left, r.top, r.right, r.bottom]; })};
    }))"""


def test_report_renders_in_chromium_without_errors_or_network_and_shows_the_stored_numbers(
    tmp_path: Path, synthetic_mnist: Mnist, browser: DevTools
) -> None:
    url = build_study(tmp_path / "hpo.db")
    report = build_report(options(tmp_path, url, pictures=True), mnist=synthetic_mnist)
    desktop = {"width": 1200, "height": 900, "deviceScaleFactor": 1, "mobile": False}
    browser.call("Emulation.setDeviceMetricsOverride", desktop)
    open_page(browser, report.html_path)

    assert errors(browser.events) == []
    requested = [
        e["params"]["request"]["url"]
        for e in browser.events
        if e.get("method") == "Network.requestWillBeSent"
    ]
    assert requested and all(u.startswith(("file://", "data:")) for u in requested), requested

    figures = browser.evaluate(FIGURES)
    assert [f["id"] for f in figures] == [
        "fig-history",
        "fig-curves",
        "fig-parallel",
        "fig-importances",
        "fig-slice",
        "fig-contour",
        "fig-schedule",
    ]
    for f in figures:
        assert f["svg"] >= 1 and f["traces"] >= 1 and f["drawn"] > 0, f
    # Log axes (the lr and hidden1 slices, the schedule) labelled in full, in order, within the
    # axis, none overlapping: plotly's own wrote "9, 0.01, 2, 3" and "100μ".
    log_axes = browser.evaluate(LOG_AXES)
    assert {a["figure"] for a in log_axes} == {"fig-slice", "fig-schedule"}
    for a in log_axes:
        ticks = [float(text) for text in a["labels"]]  # "100μ" would raise
        lo, hi = (10**end for end in a["range"])
        assert len(ticks) >= 2 and ticks == sorted(set(ticks)), a
        assert all(lo <= t <= hi for t in ticks), a
        # Along the axis, each label ends before the next begins (boxes: left, top, right, bottom).
        along = (0, 2) if a["axis"].startswith("x") else (1, 3)
        spans = sorted((box[along[0]], box[along[1]]) for box in a["boxes"])
        assert all(end <= start for (_, end), (start, _) in itertools.pairwise(spans)), a
    images = browser.evaluate("[...document.images].map(i => i.complete && i.naturalWidth)")
    assert len(images) == 4 and all(w > 100 for w in images)

    cells = {(c["metric"], c["role"]): c for c in browser.evaluate(VERDICT_CELLS)}
    values = {n: v for n, _, v, _, _ in TRIALS}
    for role, trial in (("baseline", BASELINE), ("best", BEST)):
        val, test = cells["val_acc", role], cells["test_acc", role]
        assert (val["trial"], test["trial"]) == (str(trial), str(trial))
        assert float(val["value"]) == values[trial] and val["text"] == f"{values[trial]:.2%}"
        assert float(test["value"]) == FINAL_TEST[trial]
        assert test["text"] == f"{FINAL_TEST[trial]:.2%}"
        params = final_record(trial)["param_count"]
        assert cells["param_count", role]["text"] == f"{params:,}"
        seconds = final_record(trial)["seconds_per_epoch"]
        assert cells["seconds_per_epoch", role]["text"] == f"{seconds:.2f} s"
    headline = browser.evaluate("document.querySelector('.headline').textContent")
    assert headline.startswith(
        f"Best trial #{BEST}: 98.35% validation accuracy vs the tutorial's 96.50% (+1.85 pp)"
    )
