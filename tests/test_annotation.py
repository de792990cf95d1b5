"""The annotation service: the log (undo, torn lines), the real service process (answers
survive SIGKILL), the browser's button path, the keyboard script, and FINISH reporting to a
real Dagster webserver."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import httpx
import pytest
from gradio_client import Client

from chara_assets.annotation import (
    AnnotationLog,
    DagsterTarget,
    Sample,
    Task,
    default_log_path,
    first_undecided,
    progress,
    report_request,
    report_to_dagster,
)
from chara_resources.embedded.launcher import free_port
from chara_resources.settings import PROJECT_ROOT

from .conftest import write_tone

# Gradio phones home at launch unless told not to; the machines here have no way out.
QUIET_ENV = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}


def text_task(n: int = 12, **changes) -> Task:
    samples = [Sample(id=f"s{i:02d}", text=f"Sentence number {i}.") for i in range(n)]
    fields = dict(title="Corpus review", labels=["yes", "no"], samples=samples)
    return Task(**(fields | changes))


# -- (a) the log -------------------------------------------------------------------------


def test_log_replays_decisions_and_undo(tmp_path: Path) -> None:
    log = AnnotationLog(tmp_path / "a" / "log.jsonl")
    assert log.decisions() == {} and log.undo() is None
    assert not log.path.exists()  # an undo with nothing to cancel writes nothing
    log.append("s1", "yes", user="ann")
    log.append("s2", "no")
    log.append("s1", "no")  # a correction
    assert log.decisions() == {"s2": "no", "s1": "no"}
    assert log.undo()["label"] == "no"  # cancels the correction: the earlier label is back
    assert log.decisions() == {"s1": "yes", "s2": "no"}
    assert log.counts() == {"yes": 1, "no": 1}
    log.note("finish", reported=False)
    assert log.undo()["sample_id"] == "s2"
    assert log.last_decision()["sample_id"] == "s1"

    again = AnnotationLog(log.path)  # replaying the file gives the same state
    assert again.decisions() == {"s1": "yes"}
    ops = [e["op"] for e in again.history()]
    assert ops == ["decide", "decide", "decide", "undo", "finish", "undo"]
    assert again.history()[0]["user"] == "ann"
    lines = log.path.read_text().splitlines()
    assert len(lines) == 6 and all(json.loads(x) for x in lines)  # appended, never rewritten
    with pytest.raises(ValueError, match="extra fields"):
        log.append("s3", "yes", ts="yesterday")
    with pytest.raises(ValueError):
        log.note("undo")


def test_log_survives_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    log = AnnotationLog(path)
    log.append("s1", "yes")
    log.append("s2", "no")
    with open(path, "ab") as f:  # a crash in the middle of a write
        f.write(b'{"op": "decide", "sample_id": "s3", "la')
    torn = AnnotationLog(path)
    assert torn.decisions() == {"s1": "yes", "s2": "no"}
    assert torn.damaged_lines == [3]
    torn.append("s4", "yes")  # starts on a fresh line: the torn one stays apart
    after = AnnotationLog(path)
    assert after.decisions() == {"s1": "yes", "s2": "no", "s4": "yes"}
    assert after.damaged_lines == [3]
    assert len(path.read_text().splitlines()) == 4

    # A complete entry that only lacks its newline was written: it counts.
    with open(path, "ab") as f:
        f.write(json.dumps({"op": "decide", "sample_id": "s5", "label": "no"}).encode())
    whole = AnnotationLog(path)
    assert whole.decisions()["s5"] == "no" and whole.damaged_lines == [3]
    whole.append("s6", "yes")
    assert AnnotationLog(path).decisions()["s6"] == "yes"


def test_task_checks_saves_and_resolves_paths(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="reserved"):
        text_task(labels=["yes", "skip"])
    with pytest.raises(ValueError, match="unique"):
        text_task(samples=[Sample(id="a", text="x"), Sample(id="a", text="y")])
    with pytest.raises(ValueError, match="need a path"):
        Task(title="t", kind="audio", labels=["alice"], samples=[Sample(id="a", text="x")])
    task = Task(
        title="Voices",
        kind="audio",
        labels=["alice", "bob"],
        allow_delete=True,
        samples=[Sample(id="a", path="clips/a.wav")],
        dagster=DagsterTarget(asset_key="who/is_it", partition="kiki"),
    )
    saved = task.save(tmp_path / "voices.json")
    loaded = Task.load(saved)
    assert loaded == task and loaded.answers == ["alice", "bob", "skip", "delete"]
    assert loaded.sample_path(loaded.samples[0]) == (tmp_path / "clips" / "a.wav").resolve()
    assert default_log_path(saved) == tmp_path / "voices.annotations.jsonl"


def test_progress_next_sample_and_report_request(tmp_path: Path) -> None:
    task = text_task(4, dagster=DagsterTarget(url="http://h:1/", asset_key="a b/c"))
    log = AnnotationLog(tmp_path / "log.jsonl")
    assert first_undecided(task, log).id == "s00"
    log.append("s00", "yes")
    log.append("s01", "skip")
    log.append("s02", "no")
    assert first_undecided(task, log).id == "s03"  # a skipped sample is not asked again
    state = progress(task, log)
    assert state.line() == "2 of 4 decided, 1 yes, 1 no; 1 skipped; 1 left"
    url, body = report_request(task, log)
    assert url == "http://h:1/report_asset_materialization/a%20b/c"
    assert "partition" not in body and len(body["data_version"]) == 16
    assert body["metadata"]["counts"] == {"yes": 1, "no": 1, "skip": 1}
    assert body["metadata"]["count_yes"] == 1
    assert body["metadata"]["log_path"] == str(log.path.resolve())
    # Dagster not running: a result that says so, not an exception in the UI thread.
    task.dagster.url = f"http://127.0.0.1:{free_port()}"
    result = report_to_dagster(task, log, timeout_s=5)
    assert not result.ok and "could not reach Dagster" in result.message


def test_package_import_leaves_gradio_out() -> None:
    code = "import sys, chara_assets.annotation; assert 'gradio' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, check=True)


@pytest.mark.slow
def test_service_takes_a_strategy_and_keys_click_buttons(tmp_path: Path) -> None:
    from chara_assets.annotation.__main__ import load_strategy
    from chara_assets.annotation.app import AnnotationService, shortcut_js, shortcuts

    task = text_task(3, labels=["yes", "no", "unsure"], allow_delete=True)
    last_first = AnnotationService(  # an active-learning strategy plugs in the same way
        task,
        AnnotationLog(tmp_path / "log.jsonl"),
        next_sample=lambda t, log: next(
            (s for s in reversed(t.samples) if s.id not in log.decisions()), None
        ),
    )
    assert last_first.state()["current"]["id"] == "s02"
    assert last_first.decide("unsure")["applied"]["sample_id"] == "s02"
    with pytest.raises(ValueError, match="not one of"):
        last_first.decide("maybe")
    assert load_strategy(None) is first_undecided
    assert load_strategy("chara_assets.annotation:first_undecided") is first_undecided
    with pytest.raises(ValueError, match="module:function"):
        load_strategy("first_undecided")
    assert shortcuts(task) == {
        "yes": ["y", "1"],
        "no": ["n", "2"],
        "unsure": ["3"],  # 'u' is UNDO's
        "skip": ["s"],
        "delete": ["x", "Delete"],
        "undo": ["u", "Backspace"],
    }
    node = shutil.which("node")
    if node is None:  # the machines here have Node.js; without it the mapping check stands
        return
    # Run the page script against a stand-in DOM: keys click buttons, typing does not.
    harness = """
    const listeners = []; const clicks = [];
    const button = (id) => ({tagName: 'BUTTON', disabled: false, click: () => clicks.push(id)});
    globalThis.window = {};
    globalThis.document = {
      addEventListener: (type, fn) => listeners.push([type, fn]),
      getElementById: (id) => button(id),
    };
    const install = SCRIPT;
    install(); install();  // Gradio may call it again: one listener only
    const press = (key, extra) => listeners.forEach(([t, fn]) => fn(Object.assign(
      {key, target: {tagName: 'BODY'}, preventDefault() {}}, extra || {})));
    press('y'); press('N'); press('3'); press('Delete'); press('u'); press('f');
    press('y', {target: {tagName: 'TEXTAREA'}}); press('y', {repeat: true});
    press('y', {ctrlKey: true});
    console.log(JSON.stringify({listeners: listeners.length, clicks}));
    """.replace("SCRIPT", shortcut_js(task))
    out = subprocess.run([node, "-e", harness], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == {
        "listeners": 1,
        "clicks": [
            "chara-btn-yes",
            "chara-btn-no",
            "chara-btn-unsure",
            "chara-btn-delete",
            "chara-btn-undo",
        ],
    }


# -- the service as its own process ------------------------------------------------------


def start(cmd: list[str], url: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start a server in its own process group; return once ``url`` answers 200."""
    with open(log, "ab") as out:
        process = subprocess.Popen(
            cmd,
            cwd=PROJECT_ROOT,
            env=os.environ | env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise AssertionError(f"{cmd[:3]} exited at start:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            stop(process)
            raise AssertionError(f"{cmd[:3]} did not answer:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def stop(process: subprocess.Popen, grace_s: float = 10) -> None:
    """Stop the process group we started (its id is the process's id): TERM, then KILL."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError):  # children (Dagster's code server) may
        os.killpg(process.pid, signal.SIGKILL)  # outlive the leader
    process.wait()


def start_service(task_path: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "chara_assets.annotation", str(task_path), "--port", str(port)]
    return start(cmd, f"{url}/config", QUIET_ENV, task_path.parent / "service.out"), url


def press(url: str, elem_id: str | None, session: str) -> list:
    """Do what the browser does for a click (or the page load, elem_id None): join the queue
    with the event's function and read its result from the event stream."""
    config = httpx.get(f"{url}/config").json()
    deps, components = config["dependencies"], config["components"]
    if elem_id is None:
        trigger, dep = None, next(d for d in deps if d["targets"][0][1] == "load")
    else:
        trigger = next(c["id"] for c in components if c["props"].get("elem_id") == elem_id)
        dep = next(d for d in deps if [trigger, "click"] in d["targets"])
    body = {
        "data": [None] * len(dep["inputs"]),  # the tab's State is kept on the server
        "fn_index": dep["id"],
        "session_hash": session,
        "event_data": None,
        "trigger_id": trigger,
    }
    httpx.post(f"{url}/gradio_api/queue/join", json=body).raise_for_status()
    params = {"session_hash": session}
    with httpx.stream("GET", f"{url}/gradio_api/queue/data", params=params, timeout=30) as s:
        for line in s.iter_lines():
            message = json.loads(line[5:]) if line.startswith("data:") else {}
            if message.get("msg") == "process_completed":
                assert message["success"], message
                return message["output"]["data"]
    raise AssertionError("the event stream ended without a result")


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen]]:
    """Servers a test starts; each is stopped by its process group at the end."""
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        stop(process)


@pytest.mark.slow
def test_answers_survive_sigkill(tmp_path: Path, processes: list[subprocess.Popen]) -> None:
    task_path = text_task(12).save(tmp_path / "review.json")
    process, url = start_service(task_path)
    processes.append(process)
    client = Client(url, verbose=False)
    expected = {}
    for i in range(10):
        label = "yes" if i % 3 else "no"
        # Half name the sample (as the UI does), half answer whatever is current.
        state = client.predict(label, f"s{i:02d}" if i % 2 else "", api_name="/decide")
        expected[f"s{i:02d}"] = label
        assert state["applied"]["sample_id"] == f"s{i:02d}"
    assert state["progress"] == "10 of 12 decided, 6 yes, 4 no; 2 left"
    client.close()

    os.killpg(process.pid, signal.SIGKILL)  # no shutdown, no chance to flush anything
    process.wait()
    process, url = start_service(task_path)
    processes.append(process)
    client = Client(url, verbose=False)
    state = client.predict(api_name="/state")
    assert state["counts"] == {"yes": 6, "no": 4, "skip": 0}
    assert state["current"] == {"id": "s10", "text": "Sentence number 10.", "path": None}
    assert AnnotationLog(default_log_path(task_path)).decisions() == expected

    state = client.predict(api_name="/undo")
    assert state["undone"]["sample_id"] == "s09" and state["current"]["id"] == "s09"
    del expected["s09"]
    log = AnnotationLog(default_log_path(task_path))
    assert log.decisions() == expected and log.history()[-1]["op"] == "undo"
    with pytest.raises(Exception, match="not one of"):
        client.predict("maybe", "", api_name="/decide")

    # The browser's path: the page loads s09, then the SKIP button labels what it shows.
    session = uuid.uuid4().hex[:10]
    shown = press(url, None, session)
    assert "Sentence number 9." in shown[1] and "9 of 12 decided" in shown[0]
    after = press(url, "chara-btn-skip", session)
    assert "Sentence number 10." in after[1] and "1 skipped" in after[0]
    assert AnnotationLog(default_log_path(task_path)).decisions()["s09"] == "skip"
    client.close()


# -- reporting to Dagster ----------------------------------------------------------------

DEFINITIONS = """
import dagster as dg

defs = dg.Definitions(
    assets=[
        dg.AssetSpec(
            "corpus_review",
            partitions_def=dg.StaticPartitionsDefinition(["kiki", "boris"]),
            description="decisions of a person, reported by the annotation service",
        )
    ]
)
"""


@pytest.mark.slow
def test_finish_reports_a_materialization(
    tmp_path: Path, processes: list[subprocess.Popen]
) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    (tmp_path / "defs.py").write_text(DEFINITIONS)
    dagster_port = free_port()
    dagster_url = f"http://127.0.0.1:{dagster_port}"
    webserver = [
        str(Path(sys.executable).parent / "dagster-webserver"),
        *("-f", str(tmp_path / "defs.py"), "-h", "127.0.0.1", "-p", str(dagster_port)),
    ]
    env = {"DAGSTER_HOME": str(home)}
    processes.append(start(webserver, f"{dagster_url}/server_info", env, tmp_path / "dg.out"))

    # Audio recordings labelled with user names, DELETE on: the identification chain's shape.
    clips = tmp_path / "clips"
    clips.mkdir()
    samples = [Sample(id=f"c{i}", path=f"clips/c{i}.wav") for i in range(4)]
    for s in samples:
        write_tone(tmp_path / s.path, 0.3)
    target = DagsterTarget(url=dagster_url, asset_key="corpus_review", partition="kiki")
    task = Task(
        title="Who speaks?",
        kind="audio",
        labels=["alice", "bob"],
        allow_delete=True,
        samples=samples,
        dagster=target,
    )
    task_path = task.save(tmp_path / "who.json")
    service, url = start_service(task_path)
    processes.append(service)

    # The page plays the current recording: Gradio serves that file.
    audio = press(url, None, uuid.uuid4().hex[:10])[2]
    assert audio["path"].endswith("c0.wav") or audio["orig_name"] == "c0.wav"
    assert httpx.get(audio["url"]).content[:4] == b"RIFF"

    client = Client(url, verbose=False)
    for label in ("alice", "bob", "alice", "delete"):
        client.predict(label, "", api_name="/decide")
    result = client.predict(api_name="/finish")
    client.close()
    assert result["ok"] and result["reported"], result
    assert result["counts"] == {"alice": 2, "bob": 1, "skip": 0, "delete": 1}

    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = instance.fetch_materializations(dg.AssetKey("corpus_review"), limit=5).records
    assert len(records) == 1
    materialization = records[0].asset_materialization
    assert materialization.partition == "kiki"
    metadata = {k: v.value for k, v in materialization.metadata.items()}
    assert metadata["counts"] == {"alice": 2, "bob": 1, "skip": 0, "delete": 1}
    assert metadata["count_alice"] == 2 and metadata["decided"] == 3 and metadata["left"] == 0
    assert metadata["log_path"] == str(default_log_path(task_path).resolve())
    assert materialization.tags["dagster/data_version"] == result["data_version"]
    assert AnnotationLog(default_log_path(task_path)).history()[-1]["op"] == "finish"
