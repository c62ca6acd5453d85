"""A new user's first hour: the documented examples work as printed against `make serve`, the job's log lines
show, a bad setting or flag is one line and a non-zero exit, Ctrl+C is quiet, the demo takes its options."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
import requests

from devstack.population import make_customers
from devstack.serve import TRY_IT
from shared.snapshots.store import ChangeRef, Manifest
from tests.support.api import foreign_settings
from tests.support.paths import REPO
from tests.support.teams import VALIDATOR

ROOT = REPO
BASH, MAKE = shutil.which("bash") or "bash", shutil.which("make") or "make"
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = ROOT / "docs"
HTTP_API = (DOCS / "http-api.md").read_text(encoding="utf-8")
SERVE_CUSTOMERS = 3000  # make serve's default population: the docs' examples must find their customers in it


def readme_try_it() -> list[str]:
    """The `make serve` curl block of docs/http-api.md, as printed: one logical command per item
    (continuations joined)."""
    section = HTTP_API[HTTP_API.index("## Try it locally: `make serve`") :]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    block = next(b for b in blocks if "export FUNC=" in b)
    return block.replace("\\\n", "\\\x00").splitlines()


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in foreign_settings()}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Process:
    """A devstack command in a child process, its stdout and stderr collected as they come."""

    def __init__(self, module: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=ROOT,
            env=env or clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # Ctrl+C as in a terminal, even when this test runs where SIGINT is ignored (a background job)
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        self.out: list[str] = []
        self.err: list[str] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        for stream, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._read, args=(stream, lines), daemon=True).start()

    @staticmethod
    def _read(stream: IO[str], lines: list[str]) -> None:
        for line in stream:
            lines.append(line)

    def wait_for(self, text: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while text not in "".join(self.out + self.err):
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.05)

    def finish(self, timeout: float = 120) -> int:
        status = self.proc.wait(timeout=timeout)
        time.sleep(0.1)  # let the readers drain
        return status

    def output(self) -> str:
        return "".join(self.out) + "\n--- stderr ---\n" + "".join(self.err)


# -- make serve and the docs -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def serve_cards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where this module's serve saves its Teams cards: its own folder, not the repository's .demo/ that
    another test process may be writing."""
    return tmp_path_factory.mktemp("serve-cards")


@pytest.fixture(scope="module")
def serve(serve_cards: Path) -> Iterator[Process]:
    process = Process("devstack.serve", "--port", "0", "--cards", str(serve_cards))
    try:
        process.wait_for("Ctrl+C stops everything.", timeout=180)
        yield process
    finally:
        if process.proc.poll() is None:
            process.proc.kill()


def test_readme_examples_are_what_make_serve_prints():
    """The examples use make serve's first customer; serve prints the same lines with its keys."""
    first = make_customers(SERVE_CUSTOMERS)[0]
    printed = TRY_IT.format(customer_id=first["id"], domain=first["companyProfile"]["domain"])
    lines = readme_try_it()
    assert lines[0].startswith("export FUNC=http://127.0.0.1:7071 KEY=")
    readme = "\n".join(re.sub(r"\s+# .*$", "", line) for line in lines[1:]).replace("\x00", "\n")
    assert readme + "\n" == printed


def test_readme_examples_work_as_printed_against_make_serve(serve, tmp_path):
    exported = next(line for line in serve.out if line.startswith("export FUNC="))
    values = dict(re.findall(r"(\w+)=(\S+)", exported))
    results = []
    for number, line in enumerate(readme_try_it()[1:]):
        command = line.replace("\x00", "\n")
        script = f"set -euo pipefail\n{command}\n"
        done = subprocess.run(
            [BASH, "-c", script + ('echo "NEXT=$NEXT ETAG=$ETAG"' if "=$(" in command else "")],
            cwd=tmp_path,
            env={**clean_env(), "NEXT": "", "ETAG": "", **values},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, (number, command, done.stdout[-500:], done.stderr[-500:])
        results.append((command, done.stdout))
        if command.startswith(("NEXT=", "ETAG=")):  # the next line uses what this one set
            name = command.split("=", 1)[0]
            values[name] = re.search(rf"{name}=(\S*)", done.stdout.splitlines()[-1]).group(1)
            assert values[name], (command, done.stdout)

    outputs = dict(results)

    def output(start: str) -> str:
        return next(text for command, text in outputs.items() if start in command)

    first = make_customers(SERVE_CUSTOMERS)[0]
    assert json.loads(output("/api/health"))["status"] == "ok"
    assert json.loads(output(f'customers/{first["id"]}"'))["id"] == first["id"]
    by_domain = json.loads(output("?domain="))
    assert by_domain["count"] == 1 and by_domain["customers"][0]["id"] == first["id"]
    assert json.loads(output("q=soci%C3%A9t%C3%A9"))["count"] > 0
    assert (tmp_path / "contoso.csv").read_bytes().startswith(b'\xef\xbb\xbf"id","tenantId"')
    assert json.loads((tmp_path / "snapshot.json").read_bytes())["customerCount"] == SERVE_CUSTOMERS
    assert json.loads(output('/api/snapshots"'))["snapshots"]
    assert json.loads((tmp_path / "openapi.json").read_bytes())["openapi"].startswith("3.0")
    assert "code=" in values["NEXT"]
    second_page = json.loads(output('curl -s "$NEXT"'))
    assert second_page["customers"] and second_page["query"] == {"q": "contoso"}
    assert output("If-None-Match").startswith("HTTP/1.1 304")
    assert output("admin/functions").startswith("HTTP/1.1 202")


def test_make_serve_has_changes_and_histories_to_show(serve, tmp_path):
    """serve publishes three earlier nights before today's run (customers added, removed and renamed) with
    the events queue set: the changes and history lines it prints answer real changes."""
    exported = next(line for line in serve.out if line.startswith("export FUNC="))
    values = dict(re.findall(r"(\w+)=(\S+)", exported))
    printed = [line.strip() for line in serve.out if line.startswith("curl ")]
    printed = [line for line in printed if "/api/changes?" in line or "/history" in line]
    answers = []
    for command in printed:
        done = subprocess.run(
            [BASH, "-c", f"set -euo pipefail\n{command}\n"],
            cwd=tmp_path,
            env={**clean_env(), **values},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        answers.append(json.loads(done.stdout))
    changes, removed, returned, renamed = answers
    assert [c["type"] for c in changes["changes"]].count("added") == 3 + 2  # night two's, night three's
    assert {c["type"] for c in changes["changes"]} == {"added", "removed", "changed"}
    assert len(changes["changes"]) == 9 and changes["incomplete"] == []
    assert [c["type"] for c in removed["changes"]] == ["removed", "removed"]
    assert [e["type"] for e in returned["events"]] == ["removed", "added"] and returned["present"]
    assert [e["type"] for e in renamed["events"]] == ["changed"]
    (field,) = renamed["events"][0]["fields"].values()
    assert field["after"] == field["before"] + " Holding"
    logged = [line.split("snapshot.summary ", 1) for line in serve.err]
    summaries = [json.loads(parts[1]) for parts in logged if len(parts) == 2]
    assert [s["added"] for s in summaries[:4]] == [0, 3, 2, 0]
    assert summaries[1]["eventsSent"] > 0  # the events queue is set


def test_make_serve_prints_each_runs_signed_webhook_batch_and_teams_card(serve, serve_cards):
    """serve's first run reaches the local receivers: the batch verified, the (quiet-night) card shown as text
    and saved as JSON that is a valid Adaptive Card."""
    serve.wait_for("Teams card (saved as ", timeout=30)
    out = "".join(serve.out)
    assert re.search(r"Webhook batch msg_\w+: 1 event, signature verified \(standardwebhooks\)", out), out
    assert "snapshot.published snapshots/" in out and "Partner Center customers: no changes" in out
    saved = Path(re.search(r"Teams card \(saved as (\S+)\):", out).group(1))
    assert saved.parent == serve_cards
    assert VALIDATOR.is_valid(json.loads(saved.read_text(encoding="utf-8")))


def test_make_serve_shows_the_jobs_log_lines_and_stops_quietly(serve):
    exported = next(line for line in serve.out if line.startswith("export FUNC="))
    values = dict(re.findall(r"(\w+)=(\S+)", exported))
    runs = "".join(serve.err).count("snapshot.summary")
    time.sleep(1.1)  # snapshot names have whole seconds: a second run within the same one is refused
    admin = requests.post(
        values["FUNC"] + "/admin/functions/snapshot_customers",
        headers={"x-functions-key": values["MASTER"]},
        json={},
        timeout=120,
    )
    assert admin.status_code == 202
    serve.wait_for("snapshot.summary", timeout=5)
    log = "".join(serve.err)
    assert log.count("snapshot.summary") == runs + 1 >= 2, serve.output()  # the admin-triggered run too
    assert "snapshot.page" in log and "Traceback" not in log
    before = len(serve.err)
    serve.proc.send_signal(signal.SIGINT)  # what Ctrl+C sends
    assert serve.finish() == 0
    after = "".join(serve.err[before:]) + "".join(serve.out)
    assert "Traceback" not in after and "KeyboardInterrupt" not in after
    assert len(serve.err[before:]) <= 2, serve.err[before:]


# -- make demo ---------------------------------------------------------------------------------------------
def test_a_bad_setting_is_one_line_and_a_non_zero_exit():
    env = clean_env() | {"PARTNER_CENTER_MAX_RETRIES": "abc"}
    demo = Process("devstack.demo", "--customers", "20", env=env)
    assert demo.finish() == 2
    assert demo.err == [
        "make demo: invalid settings: PARTNER_CENTER_MAX_RETRIES must be a whole number from 0 to 20, "
        "got 'abc'\n"
    ], demo.output()
    assert "Traceback" not in demo.output() and demo.out == []  # found before anything started

    serve = Process("devstack.serve", "--customers", "20", "--port", "0", env=env)
    assert serve.finish() == 2
    assert len(serve.err) == 1 and serve.err[0].startswith("make serve: invalid settings:"), serve.output()
    assert serve.out == []


@pytest.mark.parametrize(
    "args", [("--customers", "many"), ("--page-size", "0"), ("--no-such-flag",), ("--latency", "-1")]
)
def test_a_bad_flag_is_one_line_and_a_non_zero_exit(args):
    demo = Process("devstack.demo", *args)
    assert demo.finish() == 2
    assert len(demo.err) == 1 and demo.err[0].startswith("make demo: "), demo.output()
    assert demo.out == []  # nothing was started


def test_the_demo_takes_its_page_size_from_the_environment_and_its_flags(tmp_path):
    env = clean_env() | {"PARTNER_CENTER_PAGE_SIZE": "7"}
    cards = ("--cards", str(tmp_path))  # not the repository's .demo/, which another test process may write
    demo = Process("devstack.demo", "--customers", "30", "--latency", "0", *cards, env=env)
    assert demo.finish() == 0, demo.output()
    text = demo.output()
    assert "page size 7" in text and text.count("snapshot.page") == 5  # 30 customers, 7 a page
    latest = json.loads(text[text.index("latest.json:") + len("latest.json:") : text.index("\nSnapshot:")])
    assert set(latest) == set(
        Manifest("s", "e", "g", 30, "h", 1, 1, ChangeRef("c", 0, 0, 0), index="i", index_sha256="x").to_json()
    )
    assert latest["customerCount"] == 30
    assert "stop working" in text  # says that its URLs die with it
    first_summary = json.loads(re.search(r"snapshot\.summary (\{.*\})", text).group(1))
    assert {k: first_summary[k] for k in ("added", "removed", "changed")} == latest["changes"]["counts"]
    # The curl lines use $FUNC and $KEY: the demo says what they are before the first one.
    exported = re.search(r"^export FUNC=(http://127\.0\.0\.1:\d+) KEY=(\S+)", text, re.M)
    assert exported and exported.start() < text.index('"x-functions-key: $KEY"'), text
    assert f"HTTP API: function_app.py served by the local host at {exported.group(1)}" in text

    flagged = Process(
        "devstack.demo", "--customers", "30", "--latency", "0", "--page-size", "10", *cards, env=env
    )
    assert flagged.finish() == 0, flagged.output()
    assert flagged.output().count("snapshot.page") == 3


def test_the_demo_shows_the_signed_batches_and_the_cards_of_a_change_night_and_a_withheld_night(tmp_path):
    demo = Process("devstack.demo", "--customers", "60", "--latency", "0", "--cards", str(tmp_path))
    assert demo.finish() == 0, demo.output()
    text = demo.output()
    assert text.count("signature verified (standardwebhooks)") == 3 and "NOT verified" not in text
    assert "customer.added" in text and "snapshot.withheld  snapshots/" in text
    assert "Partner Center customers: 3 added, 2 removed, 2 changed" in text
    assert "Snapshot withheld: 21.31% fewer customers" in text
    cards = [json.loads(path.read_text(encoding="utf-8")) for path in sorted(tmp_path.glob("card-*.json"))]
    assert len(cards) == 2 and all(VALIDATOR.is_valid(card) for card in cards)
    assert cards[1]["actions"][0]["url"] == "http://127.0.0.1:7071/api/health"


def test_ctrl_c_stops_the_demo_quietly(tmp_path):
    flags = ("--customers", "2000", "--page-size", "50", "--latency", "0.5", "--cards", str(tmp_path))
    demo = Process("devstack.demo", *flags)
    demo.wait_for("snapshot.page")
    demo.proc.send_signal(signal.SIGINT)
    assert demo.finish(timeout=15) == 130  # not after the job's prefetch thread gave up retrying
    assert demo.err[-1:] == ["make demo: stopped\n"], demo.output()
    assert "Traceback" not in demo.output() and len(demo.err) <= 2


def test_make_passes_args_to_the_demo_and_serve():
    for target in ("demo", "serve"):
        dry = subprocess.run(
            [MAKE, "-n", target, "ARGS=--customers 10000"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        assert f"-m devstack.{target} --customers 10000" in dry.stdout


def test_make_test_runs_the_suite_in_parallel_and_says_how_long_it_took():
    dry = subprocess.run(
        [MAKE, "-n", "test"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=30
    ).stdout
    pytest_line = next(line for line in dry.splitlines() if "-m pytest" in line)
    assert " -n auto " in pytest_line and "--cov " in pytest_line  # coverage combined from every worker
    assert 'echo "make test: the test suite took' in dry
    serial = subprocess.run(
        [MAKE, "-n", "test", "TEST_WORKERS=0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    assert " -n 0 " in serial
    assert "make test" in (ROOT / ".ci" / "run").read_text()  # CI runs exactly this


# -- README ------------------------------------------------------------------------------------------------
def test_readme_prerequisites_come_first_and_latest_json_fields_are_all_listed():
    sections = re.findall(r"^## (.+)$", README, re.M)
    assert sections[0] == "Prerequisites"
    layout = (DOCS / "snapshots.md").read_text(encoding="utf-8")
    listed = layout[layout.index("`latest.json` names the newest committed snapshot") :].split(". ", 1)[0]
    fields = set(
        Manifest("s", "e", "g", 1, "h", 1, 1, ChangeRef("c", 0, 0, 0), index="i", index_sha256="x").to_json()
    )
    assert fields == set(re.findall(r"`(\w+)`", listed)) - {"gzip"}
    development = (DOCS / "development.md").read_text(encoding="utf-8")
    for text in (README, development):
        assert "Running it in Azure" not in text  # it described Core Tools on your machine
    bench_row = next(line for line in development.splitlines() if line.startswith("| `make bench` |"))
    assert "below" not in bench_row and "(performance.md)" in bench_row  # the figures have their own page
    assert README.index("(docs/performance.md)") < README.index("(docs/development.md)")
