"""Debian's Prometheus server and promtool, as ``make`` installs them, for the tests.

Usage::

    check = promtool("check", "rules", str(rules_file))
    target = ScrapeTarget(job="triton", address="127.0.0.1:8002", labels={"pod": "p-0"})
    with PrometheusServer(tmp_path, [target], rule_files=[rules_file]) as prometheus:
        samples = prometheus.wait_for("up", lambda s: bool(s), timeout_s=30)

``make`` installs both binaries into ``.tools/prometheus/bin``
(tools/install-prometheus.sh: the pinned Debian package, unpacked, no root).
The server runs on a free port with its own data directory under the test's
temporary directory, and is stopped (its whole process group) on exit.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import yaml

from medserve.http_probe import http_ok
from medserve.ports import free_port, port_in_use
from medserve.process_group import describe_exit_status, spawn_group, stop_group

REPO_ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS_BIN = REPO_ROOT / ".tools" / "prometheus" / "bin"
STARTUP_TIMEOUT_S = 60.0
PROMTOOL_TIMEOUT_S = 120.0
_HTTP_TIMEOUT_S = 10.0
_POLL_S = 0.5
_PORT_ATTEMPTS = 3

Samples = list[dict[str, Any]]


class PromQLError(RuntimeError):
    """Prometheus refused a query (a parse or evaluation error), with its message."""


def tool(name: str) -> Path:
    """Path of ``prometheus`` or ``promtool`` as ``make`` installs them.

    Raises:
        FileNotFoundError: Not installed; the message says which target installs it.
    """
    path = PROMETHEUS_BIN / name
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: run `make prometheus` (or `make test`, which installs it)"
        )
    return path


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``promtool ARGS`` and return the finished process (never raises on exit status)."""
    return subprocess.run(
        [str(tool("promtool")), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=PROMTOOL_TIMEOUT_S,
        check=False,
    )


def check_expressions(
    expressions: Mapping[str, str], work: Path
) -> subprocess.CompletedProcess[str]:
    """Parse PromQL expressions with ``promtool check rules``, offline.

    promtool has no parse-only command in 2.42, but it parses every rule of a
    rule file: each expression becomes a recording rule named by its key
    (which must be a valid metric name).
    """
    rules = [{"record": name, "expr": expr} for name, expr in expressions.items()]
    path = work / "expressions.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "expressions", "rules": rules}]}))
    return promtool("check", "rules", str(path))


def exported_names(exposition: str) -> set[str]:
    """Names of the series in a Prometheus text exposition (a summary's ``_sum`` too)."""
    return {
        re.split(r"[{\s]", line, maxsplit=1)[0]
        for line in exposition.splitlines()
        if line.strip() and not line.startswith("#")
    }


@dataclass(frozen=True)
class ScrapeTarget:
    """One ``host:port`` scraped at ``/metrics`` under a job name, with extra labels."""

    job: str
    address: str
    labels: Mapping[str, str] = field(default_factory=dict)


class PrometheusServer:
    """A real Prometheus server scraping the given targets every ``scrape_interval_s``."""

    def __init__(
        self,
        work_dir: Path,
        targets: Sequence[ScrapeTarget],
        *,
        scrape_interval_s: int = 1,
        rule_files: Sequence[Path] = (),
    ) -> None:
        """Describe the server; nothing starts until :meth:`start`.

        Args:
            work_dir: Holds the config, the TSDB and the log (a test's tmp dir).
            targets: What to scrape.
            scrape_interval_s: Scrape and rule evaluation interval.
            rule_files: Rule files to load (alerting and recording rules).
        """
        self.work_dir = work_dir
        self.targets = tuple(targets)
        self.scrape_interval_s = scrape_interval_s
        self.rule_files = tuple(rule_files)
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        """The server's log file."""
        return self.work_dir / "prometheus.log"

    def __enter__(self) -> PrometheusServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _write_config(self) -> Path:
        interval = f"{self.scrape_interval_s}s"
        config = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": [str(path) for path in self.rule_files],
            "scrape_configs": [
                {
                    "job_name": target.job,
                    "scrape_interval": interval,
                    "scrape_timeout": interval,
                    "static_configs": [
                        {"targets": [target.address], "labels": dict(target.labels)}
                    ],
                }
                for target in self.targets
            ],
        }
        path = self.work_dir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        return path

    def start(self) -> None:
        """Start the server and wait until it answers ``/-/ready``.

        Raises:
            RuntimeError: It exited or was not ready in time (quoting its log).
        """
        self.work_dir.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            self.port = free_port()
            command = [
                str(tool("prometheus")),
                f"--config.file={config}",
                f"--storage.tsdb.path={self.work_dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ]
            with self.log_path.open("wb") as log_file:
                self._proc = spawn_group(command, env=dict(os.environ), log_file=log_file)
            try:
                self._wait_until_ready()
                return
            except RuntimeError:
                self.stop()
                # Another process may take the probed port before Prometheus binds it.
                if attempt == _PORT_ATTEMPTS or not port_in_use(self.port):
                    raise

    def _wait_until_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            status = self._proc.poll()
            if status is not None:
                raise RuntimeError(
                    f"prometheus {describe_exit_status(status)}:\n{self._log_tail()}"
                )
            if http_ok(f"{self.url}/-/ready"):
                return
            time.sleep(_POLL_S)  # Polling a readiness endpoint, not synchronising.
        raise RuntimeError(f"prometheus not ready in {STARTUP_TIMEOUT_S} s:\n{self._log_tail()}")

    def _log_tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])

    def stop(self) -> None:
        """Stop the server; safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_group(proc, grace_s=10.0)

    def api(self, path: str, **params: str) -> Any:
        """The ``data`` of a GET of ``/api/v1/PATH``.

        Raises:
            PromQLError: Prometheus answered an error (its ``errorType`` and ``error``).
        """
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=_HTTP_TIMEOUT_S) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            # Bad queries answer 400/422 with a JSON body that says why.
            body = json.load(exc)
        if body.get("status") != "success":
            raise PromQLError(f"{body.get('errorType')}: {body.get('error')} (GET {url})")
        return body["data"]

    def query(self, expr: str) -> Samples:
        """The instant vector of ``expr`` now: ``[{"metric": {...}, "value": [t, "v"]}]``."""
        data = self.api("query", query=expr)
        if data["resultType"] != "vector":
            raise PromQLError(f"{expr!r} is a {data['resultType']}, not an instant vector")
        return list(data["result"])

    def wait_for(
        self,
        expr: str,
        condition: Callable[[Samples], bool],
        *,
        timeout_s: float,
        on_poll: Callable[[Samples], None] | None = None,
    ) -> Samples:
        """Poll ``expr`` until ``condition`` holds for its result; return that result.

        Args:
            expr: The PromQL expression.
            condition: Decides on each result.
            timeout_s: Deadline; polled every half second until then.
            on_poll: Called with every result (to record what was seen).

        Raises:
            TimeoutError: The condition did not hold in time (with the last result).
        """

        last: list[Samples] = []

        def check() -> Samples | None:
            samples = self.query(expr)
            last[:] = [samples]
            if on_poll is not None:
                on_poll(samples)
            return samples if condition(samples) else None

        try:
            return poll_until(check, timeout_s=timeout_s, what=repr(expr))
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; last result {last}") from None


T = TypeVar("T")


def poll_until(check: Callable[[], T | None], *, timeout_s: float, what: str) -> T:
    """Call ``check`` every half second until it returns a value other than None.

    Raises:
        TimeoutError: ``check`` kept returning None for ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not met in {timeout_s} s")
        time.sleep(_POLL_S)  # The poll period of a deadline-bounded wait.


def values(samples: Samples) -> list[float]:
    """The float values of an instant vector's samples."""
    return [float(sample["value"][1]) for sample in samples]
