"""What chara's BrainBox client path costs over a minimal raw httpx loop.

    .venv/bin/python bench/brainbox_overhead.py [--sizes 200 2000] [--sleep-ms 5]

One embedded BrainBox (real kaia-brainbox server) with a decider that sleeps ``--sleep-ms`` per
job. For each size, four client runs in ABBA order (raw, chara, chara, raw) — the server's own
per-job cost grows with the jobs it holds, so the order cancels that drift — each in its own
process, so its peak RSS is its own. "chara" is the path assets use: ``run_jobs`` with the
work cache (keys, pending markers, streamed results stored item by item). "raw" submits all
jobs in one call, polls batch progress every 50 ms and fetches all results in one request.
Targets (issue 3): chara/raw <= 1.15 in time at both sizes; chara's peak RSS at the large size
<= 1.2 x at the small one.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DECIDER = "tests.fault_deciders:SleepyEcho"


def child(mode: str, url: str, jobs: int, sleep_ms: float, work: Path) -> dict:
    import httpx

    arguments = [{"text": f"item {i}", "sleep_s": sleep_ms / 1000} for i in range(jobs)]
    started = time.perf_counter()
    if mode == "raw":
        batch = uuid.uuid4().hex
        ids = [f"{batch}-{i}" for i in range(jobs)]
        with httpx.Client(base_url=url, timeout=120) as http:
            http.post(
                "/jobs-service/base-add",
                json={
                    "jobs": [
                        {
                            "id": i,
                            "batch": batch,
                            "decider": "SleepyEcho",
                            "method": "echo",
                            "arguments": a,
                        }
                        for i, a in zip(ids, arguments, strict=True)
                    ]
                },
            ).raise_for_status()
            while not http.get(f"/batches-service/get-batch-progress/{batch}").json()[
                "is_finished"
            ]:
                time.sleep(0.05)
            results = [
                json.loads(line)["result"]
                for line in http.post("/jobs-service/get-jobs", json={"ids": ids}).iter_lines()
                if line
            ]
        assert len(results) == jobs
    else:
        from chara_resources.brainbox_client import BrainBoxClient
        from chara_resources.brainbox_jobs import Call, Job, run_jobs
        from chara_resources.work_cache import WorkCache

        step = WorkCache(work).step("bench")
        with BrainBoxClient(url) as client:
            outcome = run_jobs(
                client,
                step,
                Call("SleepyEcho", "echo"),
                [Job(a) for a in arguments],
                log=lambda _: None,
            )
        assert outcome.succeeded == jobs
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def measure(mode: str, url: str, jobs: int, sleep_ms: float) -> dict:
    with tempfile.TemporaryDirectory() as work:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                mode,
                "--url",
                url,
                "--jobs",
                str(jobs),
                "--sleep-ms",
                str(sleep_ms),
                "--work",
                work,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 2000])
    parser.add_argument("--sleep-ms", type=float, default=5.0)
    parser.add_argument("--child", choices=["raw", "chara"])
    parser.add_argument("--url")
    parser.add_argument("--jobs", type=int)
    parser.add_argument("--work", type=Path)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.url, args.jobs, args.sleep_ms, args.work)))
        return

    sys.path.insert(0, str(ROOT))
    from chara_resources.embedded.launcher import EmbeddedBrainBox

    with tempfile.TemporaryDirectory() as folder:
        box = EmbeddedBrainBox(Path(folder), [DECIDER])
        url = box.ensure_running()
        try:
            rows = {}
            for jobs in args.sizes:
                runs = {"raw": [], "chara": []}
                for mode in ("raw", "chara", "chara", "raw"):
                    runs[mode].append(measure(mode, url, jobs, args.sleep_ms))
                raw = statistics.mean(r["seconds"] for r in runs["raw"])
                ours = statistics.mean(r["seconds"] for r in runs["chara"])
                rss = max(r["max_rss_mb"] for r in runs["chara"])
                rows[jobs] = rss
                print(
                    f"{jobs:5d} jobs x {args.sleep_ms:g} ms: raw {raw:6.2f} s, chara {ours:6.2f} s,"
                    f" chara/raw {ours / raw:.3f}; peak RSS chara {rss:.0f} MB, raw "
                    f"{max(r['max_rss_mb'] for r in runs['raw']):.0f} MB"
                )
            if len(rows) > 1:
                small, large = min(rows), max(rows)
                print(f"chara peak RSS {large} vs {small} jobs: {rows[large] / rows[small]:.3f}x")
        finally:
            box.stop()


if __name__ == "__main__":
    main()
