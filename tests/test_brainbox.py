"""The BrainBox client and batch runner against the real kaia-brainbox server, faults included."""

from __future__ import annotations

import http.server
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from chara_resources.brainbox import BrainBoxResource, RoleBinding, UnknownRole
from chara_resources.brainbox_client import BrainBoxClient, BrainBoxUnavailable
from chara_resources.brainbox_jobs import BatchFailed, Call, Job, run_jobs, run_long_job
from chara_resources.embedded.launcher import EmbeddedBrainBox, free_port
from chara_resources.settings import PROJECT_ROOT
from chara_resources.work_cache import WorkCache

ECHO = Call("SleepyEcho", "echo")


def _jobs_in_database(box: EmbeddedBrainBox, where: str = "1 = 1") -> int:
    """Jobs the server holds, read from its own database (a second view besides its API)."""
    with sqlite3.connect(box.folder / "data" / "brainbox.db") as db:
        return db.execute(f"select count(*) from brain_box_jobs where {where}").fetchone()[0]


def _echo_jobs(n: int, sleep_s: float = 0.0, fail: set[int] = frozenset()) -> list[Job]:
    return [
        Job({"text": f"fail {i}" if i in fail else f"item {i}", "sleep_s": sleep_s})
        for i in range(n)
    ]


def test_batch_results_land_in_the_work_cache(server, tmp_path: Path) -> None:
    step = WorkCache(tmp_path / "work").step("echo")
    lines: list[str] = []
    with BrainBoxClient(server.running_url()) as client:
        outcome = run_jobs(client, step, ECHO, _echo_jobs(5), log=lines.append)
    assert (outcome.submitted, outcome.succeeded, outcome.failed) == (5, 5, 0)
    assert [r.result for r in outcome.records()] == [f"ITEM {i}" for i in range(5)]
    assert any("5/5 finished" in line for line in lines)
    assert not list((step.folder / "_submitted").glob("*"))  # no job ids left to re-attach

    with BrainBoxClient(server.running_url()) as client:
        again = run_jobs(client, step, ECHO, _echo_jobs(6), log=lines.append)
    assert (again.reused, again.submitted) == (5, 1)
    assert _jobs_in_database(server) == 6


def test_failing_jobs_are_data_and_the_ratio_decides(server, tmp_path: Path) -> None:
    step = WorkCache(tmp_path / "work").step("echo")
    with BrainBoxClient(server.running_url()) as client:
        outcome = run_jobs(client, step, ECHO, _echo_jobs(10, fail={3}), log=lambda _: None)
    records = list(outcome.records())
    assert records[3].error == "ValueError: cannot echo 'fail 3'"
    assert all(r.ok for i, r in enumerate(records) if i != 3)
    outcome.check(max_failure_ratio=0.1)
    with pytest.raises(BatchFailed, match="1 of 10 items failed"):
        outcome.check(max_failure_ratio=0.05)

    # A re-run retries the failed item only.
    with BrainBoxClient(server.running_url()) as client:
        retry = run_jobs(client, step, ECHO, _echo_jobs(10, fail={3}), log=lambda _: None)
    assert (retry.reused, retry.submitted, retry.failed) == (9, 1, 1)


def test_all_failed_fails_whatever_the_ratio(server, tmp_path: Path) -> None:
    step = WorkCache(tmp_path / "work").step("echo")
    with BrainBoxClient(server.running_url()) as client:
        outcome = run_jobs(client, step, ECHO, _echo_jobs(2, fail={0, 1}), log=lambda _: None)
    with pytest.raises(BatchFailed, match="2 of 2"):
        outcome.check(max_failure_ratio=1.0)


def test_file_results_are_downloaded_and_removed_from_the_server(server, tmp_path) -> None:
    step = WorkCache(tmp_path / "work").step("files")
    with BrainBoxClient(server.running_url()) as client:
        outcome = run_jobs(
            client,
            step,
            Call("SleepyEcho", "write"),
            _echo_jobs(3),
            result_file=".txt",
            log=lambda _: None,
        )
        names = [r.result for r in outcome.records()]
        assert [r.files[".txt"].read_text() for r in outcome.records()] == [
            f"ITEM {i}" for i in range(3)
        ]
        assert not any(client.is_file(name) for name in names)


def test_job_slower_than_the_timeout(server, tmp_path: Path) -> None:
    step = WorkCache(tmp_path / "work").step("echo")
    jobs = [Job({"text": "quick"}), Job({"text": "slow", "sleep_s": 60.0})]
    with BrainBoxClient(server.running_url()) as client:
        outcome = run_jobs(client, step, ECHO, jobs, timeout_s=1.0, log=lambda _: None)
    quick, slow = outcome.records()
    assert quick.result == "QUICK"
    assert slow.error == "not finished within 1 s (cancelled on BrainBox)"
    # It gave up at the timeout, not when the job ended: the server closes the job as cancelled
    # (its 60 s are not over), and only the quick job succeeded.
    deadline = time.monotonic() + 60
    while _jobs_in_database(server, "error = 'Cancelled'") < 1:
        assert time.monotonic() < deadline, "the slow job was not cancelled on BrainBox"
        time.sleep(0.05)
    assert _jobs_in_database(server, "success = 1") == 1


def test_unreachable_server_gives_a_clear_error(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    step = WorkCache(tmp_path / "work").step("echo")
    with BrainBoxClient(url, retry_for_s=1.0) as client, pytest.raises(BrainBoxUnavailable) as e:
        run_jobs(client, step, ECHO, _echo_jobs(1), log=lambda _: None)
    assert f"BrainBox at {url} is not reachable" in str(e.value)
    assert "gave up after 1 s" in str(e.value)


def test_server_killed_and_restarted_mid_batch(server, tmp_path: Path) -> None:
    url = server.running_url()
    port = server.state().port
    step = WorkCache(tmp_path / "work").step("echo")
    outcome = {}

    def work() -> None:
        with BrainBoxClient(url, retry_for_s=60) as client:
            outcome["value"] = run_jobs(
                client, step, ECHO, _echo_jobs(12, sleep_s=0.2), log=lambda _: None
            )

    worker = threading.Thread(target=work)
    worker.start()
    deadline = time.monotonic() + 30
    while _jobs_in_database(server, "success = 1") < 4:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(server.state().pid, signal.SIGKILL)
    time.sleep(1.0)
    server.start(port=port)
    worker.join(timeout=60)
    assert not worker.is_alive()
    result = outcome["value"]
    assert [r.result for r in result.records()] == [f"ITEM {i}" for i in range(12)]
    assert _jobs_in_database(server) == 12  # nothing was submitted twice


def test_restart_after_stop_keeps_the_port(server) -> None:
    port = server.state().port
    assert server.stop()
    assert server.state() is None and server.previous_port() == port
    assert server.ensure_running() == f"http://127.0.0.1:{port}"  # as `chara brainbox start`


def test_restart_on_a_taken_port_says_so_and_waiting_clients_find_it(
    server, tmp_path: Path
) -> None:
    """`chara brainbox stop`, another program takes the port, `chara brainbox start`: the
    server comes up on a new port, says why, and a batch that was waiting finds it through
    server.json instead of giving up on the old port."""
    old_url, old_port = server.running_url(), server.state().port
    step = WorkCache(tmp_path / "work").step("echo")
    outcome, moves = {}, []

    def work() -> None:
        with BrainBoxClient(
            old_url, retry_for_s=60, on_retry=moves.append, locate=server.recorded_url
        ) as client:
            outcome["value"] = run_jobs(
                client, step, ECHO, _echo_jobs(12, sleep_s=0.2), log=lambda _: None
            )

    worker = threading.Thread(target=work)
    worker.start()
    deadline = time.monotonic() + 30
    while _jobs_in_database(server, "success = 1") < 4:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert server.stop()
    notes: list[str] = []
    # Another program takes the old port: a web server that answers 404 to everything.
    squatter = http.server.HTTPServer(("127.0.0.1", old_port), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=squatter.serve_forever, daemon=True).start()
    try:
        time.sleep(1.0)  # the client meets the stopped server
        new_url = server.ensure_running(log=notes.append)
        worker.join(timeout=60)
    finally:
        squatter.shutdown()
        squatter.server_close()
    assert not worker.is_alive()
    assert new_url != old_url
    assert notes == [
        f"the embedded BrainBox's port {old_port} (in {server.folder / 'server.json'}) is taken "
        "by another program; starting on a free port instead (runs that wait for the server "
        "find the new port in server.json)"
    ]
    assert f"BrainBox moved from {old_url} to {new_url}" in moves
    result = outcome["value"]
    assert [r.result for r in result.records()] == [f"ITEM {i}" for i in range(12)]
    assert _jobs_in_database(server) == 12  # nothing was submitted twice


def test_explicit_port_that_is_taken_is_refused(server) -> None:
    port = server.state().port  # our own server listens there
    with pytest.raises(RuntimeError, match=f"on port {port}: another program listens there"):
        EmbeddedBrainBox(server.folder.parent / "other", server.deciders).start(port=port)


def test_killed_run_reattaches_instead_of_resubmitting(server, tmp_path: Path) -> None:
    work = tmp_path / "work"
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from chara_resources.brainbox_client import BrainBoxClient\n"
        "from chara_resources.brainbox_jobs import Call, Job, run_jobs\n"
        "from chara_resources.work_cache import WorkCache\n"
        "step = WorkCache(Path(sys.argv[2])).step('echo')\n"
        "jobs = [Job({'text': f'item {i}', 'sleep_s': 0.2}) for i in range(10)]\n"
        "with BrainBoxClient(sys.argv[1]) as client:\n"
        "    run_jobs(client, step, Call('SleepyEcho', 'echo'), jobs, log=print)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script, server.running_url(), str(work)], cwd=PROJECT_ROOT
    )
    step = WorkCache(work).step("echo")
    deadline = time.monotonic() + 30
    # Killed as soon as its ids are recorded and every job is on the server (the batch takes
    # 2 s, and the run stores results only once it is finished: none are stored yet).
    while (
        len(list((step.folder / "_submitted").glob("*.json"))) < 1 or _jobs_in_database(server) < 10
    ):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not list(step.folder.glob("*.json"))  # killed before it stored any result

    with BrainBoxClient(server.running_url()) as client:
        outcome = run_jobs(client, step, ECHO, _echo_jobs(10, sleep_s=0.2), log=lambda _: None)
    assert (outcome.attached, outcome.submitted) == (10, 0)
    assert [r.result for r in outcome.records()] == [f"ITEM {i}" for i in range(10)]
    assert _jobs_in_database(server) == 10


def test_pool_phonemes_come_from_libespeak_ng_with_foreign_word_marks() -> None:
    from chara_resources.embedded.phonemes import EspeakPhonemes

    sentences = ["Hello world.", "Ich erinnere dich an deine Timer.", "Добрый вечер."]
    english, german, russian = (
        EspeakPhonemes().phonemize([s], voice)[0]
        for s, voice in zip(sentences, ["en-us", "de", "ru"], strict=True)
    )
    assert english == [["h", "ə", "l", "oʊ"], ["w", "ɜː", "l", "d"]]
    assert german[-1][0] == "(en)"  # "Timer" is voiced as an English word: a foreign word
    assert russian[0] == ["d", "o", "b", "r", "y", "j"]


def test_face_role_on_the_embedded_server_says_what_is_missing(server, tmp_path) -> None:
    step = WorkCache(tmp_path / "work").step("faces")
    with BrainBoxClient(server.running_url()) as client:
        outcome = run_jobs(
            client,
            step,
            Call("NoFaceModel", "analyze"),
            [Job({"image": "x.jpg"})],
            log=lambda _: None,
        )
    assert "the embedded BrainBox has no face model" in next(outcome.records()).error


def test_roles_map_to_deciders_and_can_be_overridden() -> None:
    production = BrainBoxResource(url="http://gpu:8090")
    assert production.call("cloner", "voice_to_text") == Call("CosyVoice", "voice_to_text")
    assert production.call("llm", "question").parameter == "llama3.1:8b"
    custom = BrainBoxResource(
        url="http://gpu:8090",
        roles={"llm": RoleBinding(decider="Ollama", parameter="qwen2.5:14b")},
    )
    assert custom.call("llm", "question") == Call("Ollama", "question", "qwen2.5:14b")
    embedded = BrainBoxResource()
    assert embedded.call("recognizer", "transcribe_to_array") == Call(
        "EmbeddedRecognizer", "transcribe_to_array"
    )
    # kaia's Vosk: chara asks for the raw result parts and flattens them itself
    vosk = production.call("recognizer", "transcribe_to_array")
    assert vosk == Call("Vosk", "transcribe")
    assert vosk.result([{"result": [{"word": "a"}]}, {"text": ""}]) == [{"word": "a"}]
    with pytest.raises(UnknownRole, match="unknown role 'phonemizer'"):
        embedded.call("phonemizer", "phonemize")  # espeak-ng runs locally (pool_phonemes)
    with pytest.raises(UnknownRole, match="unknown role 'painter'"):
        embedded.call("painter", "paint")


def _listening(port: int) -> list[str]:
    """Local addresses listening on ``port``, from /proc/net/tcp and tcp6."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:
                found.append(address)
    return found


def test_embedded_server_listens_on_loopback_only(server) -> None:
    port = server.state().port
    assert httpx.get(f"http://127.0.0.1:{port}/heartbeat").status_code == 200
    assert _listening(port) == ["0100007F"]  # 127.0.0.1, and nothing else


def test_long_job_forwards_progress_and_log_lines(server, tmp_path: Path) -> None:
    step = WorkCache(tmp_path / "work").step("train")
    lines: list[str] = []
    with BrainBoxClient(server.running_url()) as client:
        record = run_long_job(
            client,
            step,
            Call("SleepyEcho", "long"),
            Job({"steps": 5, "sleep_s": 0.2}),
            poll_s=0.05,
            log=lines.append,
        )
    assert record.ok and record.result == {"steps": 5}
    assert [line for line in lines if line.startswith("[SleepyEcho]")] == [
        f"[SleepyEcho] step {i} of 5" for i in range(1, 6)
    ]
    assert "SleepyEcho.long: 100%" in lines


def test_restarted_run_reattaches_to_the_running_long_job(server, tmp_path: Path) -> None:
    work = tmp_path / "work"
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from chara_resources.brainbox_client import BrainBoxClient\n"
        "from chara_resources.brainbox_jobs import Call, Job, run_long_job\n"
        "from chara_resources.work_cache import WorkCache\n"
        "step = WorkCache(Path(sys.argv[2])).step('train')\n"
        "with BrainBoxClient(sys.argv[1]) as client:\n"
        "    run_long_job(client, step, Call('SleepyEcho', 'long'),\n"
        "                 Job({'steps': 15, 'sleep_s': 0.2}), poll_s=0.1, log=print)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script, server.running_url(), str(work)], cwd=PROJECT_ROOT
    )
    deadline = time.monotonic() + 30
    while _jobs_in_database(server, "accepted_timestamp is not null") < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)
    os.kill(process.pid, signal.SIGKILL)  # the Dagster run dies; the training goes on
    process.wait()

    lines: list[str] = []
    with BrainBoxClient(server.running_url()) as client:
        record = run_long_job(
            client,
            WorkCache(work).step("train"),
            Call("SleepyEcho", "long"),
            Job({"steps": 15, "sleep_s": 0.2}),
            poll_s=0.1,
            log=lines.append,
        )
    assert record.result == {"steps": 15}
    assert any("re-attached to running job" in line for line in lines)
    assert _jobs_in_database(server) == 1  # one training, not two
