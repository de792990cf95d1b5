"""The Dagster UI driven in headless Chromium: what a person sees and launches there.

Each check of the browser's work goes through the live server's GraphQL API or the storage
root, never through the page alone, so that a page that merely looks right does not pass.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import yaml

from chara_resources.settings import PROJECT_ROOT

from .conftest import RUN_TIMEOUT_S, DagsterDev, artifacts_dir

GROUPS = {"voice", "paraphrase", "identification"}
TERMINAL_FAILURES = {"FAILURE", "CANCELED"}


def shot(page, name: str) -> None:
    """A screenshot once finite transitions (dialogs fading in) have ended; spinners loop."""
    page.wait_for_function(
        """() => document.getAnimations().every(a => a.playState !== 'running'
                 || a.effect?.getComputedTiming().endTime === Infinity)"""
    )
    page.screenshot(path=artifacts_dir() / f"{name}.png", full_page=True)


def add_character(dev: DagsterDev, name: str, lines: dict[str, tuple[str, str]]) -> None:
    """A new character file with a real espeak-ng clip per language: ``{language: (espeak
    voice, text)}``."""
    voices = dev.characters / "voices" / name
    voices.mkdir(parents=True, exist_ok=True)
    samples = []
    for language, (voice, text) in lines.items():
        clip = voices / f"{name}-{language}.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(clip), text], check=True)
        samples.append({"file": f"voices/{name}/{clip.name}", "language": language, "text": text})
    document = {
        "display_name": name.title(),
        "gender": "female",
        "description": f"{name.title()} was added while the UI was running.",
        "languages": list(lines),
        "voice_sample": samples,
    }
    (dev.characters / f"{name}.yaml").write_text(yaml.safe_dump(document, allow_unicode=True))


def character_partitions(dev: DagsterDev) -> set[str]:
    data = dev.graphql(
        """{ assetNodeOrError(assetKey: {path: ["voice_sample"]}) { ... on AssetNode {
             partitionKeysByDimension { name partitionKeys } } } }"""
    )
    dims = data["assetNodeOrError"]["partitionKeysByDimension"]
    return set(next(d["partitionKeys"] for d in dims if d["name"] == "character"))


def ensure_partition(dev: DagsterDev, name: str) -> None:
    if name not in character_partitions(dev):
        dev.graphql(
            """mutation($selector: RepositorySelector!, $key: String!) {
                 addDynamicPartition(repositorySelector: $selector, partitionsDefName:
                 "character", partitionKey: $key) { __typename } }""",
            selector={"repositoryLocationName": "chara", "repositoryName": "__repository__"},
            key=name,
        )


def open_materialize_dialog(page, dev: DagsterDev, asset: str):
    page.goto(f"{dev.url}/assets/{asset}")
    page.get_by_role("button", name="Materialize…").click()
    dialog = page.locator("[role=dialog]").filter(has_text=f"Launch runs to materialize {asset}")
    dialog.wait_for()
    return dialog


def pick(page, dialog, dimension: int, values: list[str]) -> None:
    """Tick ``values`` in the partition picker of dimension 0 (character) or 1 (language)."""
    dialog.locator("[aria-haspopup=dialog]").nth(dimension).click()
    for value in values:
        page.get_by_role("menuitem").filter(has=page.get_by_text(value, exact=True)).click()
    dialog.get_by_text("Launch runs to materialize").click()  # closes the picker


def toast_id(page, prefix: str) -> str:
    """The id in the UI's confirmation (``Launched run 1a2b3c4d``, ``Created backfill x``)."""
    toast = page.get_by_text(re.compile(rf"{prefix} [0-9a-z]+"))
    toast.wait_for()
    return re.search(rf"{prefix} ([0-9a-z]+)", toast.inner_text()).group(1)


RUNS_QUERY = """query($partition: String!) { runsOrError(filter: {tags: [{key:
  "dagster/partition", value: $partition}]}) { ... on Runs { results { runId status
  assetSelection { path } tags { key value } } } } }"""


def run_failure(dev: DagsterDev, run_id: str) -> str:
    data = dev.graphql(
        """query($id: ID!) { logsForRun(runId: $id) { ... on EventConnection { events {
             __typename ... on ExecutionStepFailureEvent { error { message errorChain {
             error { message } } } } } } } }""",
        id=run_id,
    )
    messages = [
        message
        for event in data["logsForRun"].get("events", [])
        if event.get("error")
        for message in [event["error"]["message"]]
        + [link["error"]["message"] for link in event["error"]["errorChain"]]
    ]
    return "\n".join(messages) or "no step error"


def wait_for_run(dev: DagsterDev, partition: str, run_prefix: str, expect="SUCCESS") -> dict:
    """The run the UI launched (its id starts with the toast's), once it ended as expected."""

    def finished():
        runs = dev.graphql(RUNS_QUERY, partition=partition)["runsOrError"]["results"]
        run = next((r for r in runs if r["runId"].startswith(run_prefix)), None)
        if run and run["status"] in ({"SUCCESS"} | TERMINAL_FAILURES) - {expect}:
            pytest.fail(f"run {run['runId']} {run['status']}: {run_failure(dev, run['runId'])}")
        return run if run and run["status"] == expect else None

    return dev.wait_for(f"run {run_prefix} of {partition}: {expect}", finished, RUN_TIMEOUT_S)


def materializations(dev: DagsterDev, asset: str, partitions: list[str]) -> list[dict]:
    data = dev.graphql(
        """query($path: [String!]!, $partitions: [String!]) { assetOrError(assetKey: {path:
             $path}) { ... on Asset { assetMaterializations(partitions: $partitions) {
             partition runId metadataEntries { label } } } } }""",
        path=[asset],
        partitions=partitions,
    )
    return data["assetOrError"]["assetMaterializations"]


def partition_page(page, dev: DagsterDev, asset: str, partition: str) -> None:
    page.goto(f"{dev.url}/assets/{asset}?view=partitions&partition={quote(partition)}")


def show_markdown(page, label: str) -> None:
    """Open a markdown metadata entry of the partition view (shown as a link)."""
    row = page.locator("tr").filter(has=page.get_by_text(label, exact=True))
    row.last.get_by_text("[Show Markdown]").click()
    page.locator("[role=dialog]").wait_for()


def manifest(dev: DagsterDev, asset: str, character: str, language: str) -> dict:
    path = dev.home / "assets" / asset / character / language / "manifest.json"
    return json.loads(Path(path).read_text())["manifest"]


def test_live_sensor_added_the_demo_characters(dagster_dev: DagsterDev) -> None:
    # The daemon of `dagster dev` ran the character sensor on the copied folder: one run per
    # language each demo character declares, nothing for the languages they do not speak.
    declared = {
        path.stem: yaml.safe_load(path.read_text())["languages"]
        for path in (PROJECT_ROOT / "characters").glob("*.yaml")
    }
    assert declared  # the demo characters (kiki: en, de; boris: en, ru)
    expected = sorted(
        f"{name}|{language}" for name, langs in declared.items() for language in langs
    )
    assert dagster_dev.first_tick_partitions == expected
    assert set(declared) <= character_partitions(dagster_dev)


def test_asset_graph_shows_the_three_groups(page, dagster_dev: DagsterDev) -> None:
    nodes = dagster_dev.graphql("{ assetNodes { assetKey { path } groupName } }")["assetNodes"]
    by_group: dict[str, set[str]] = {}
    for node in nodes:
        by_group.setdefault(node["groupName"], set()).add("/".join(node["assetKey"]["path"]))
    assert set(by_group) == GROUPS

    page.goto(f"{dagster_dev.url}/asset-groups")
    for group in sorted(GROUPS):  # a collapsed node per group in the global lineage
        page.get_by_text(group, exact=True).first.wait_for()
    shot(page, "asset-graph-groups")

    for group in sorted(GROUPS):  # each group's own graph names every asset in it
        page.goto(f"{dagster_dev.url}/locations/chara/asset-groups/{group}")
        for asset in sorted(by_group[group]):
            page.get_by_text(asset, exact=True).first.wait_for()
        shot(page, f"asset-group-{group}")


def test_new_character_partition_materialised_from_the_ui(page, dagster_dev) -> None:
    add_character(
        dagster_dev,
        "nova",
        {
            "en": ("en-us", "Hello, I am Nova. I will keep an eye on your timers and the weather."),
            "ru": ("ru", "Привет, я Нова. Я помогу тебе с таймерами и расскажу о погоде."),
        },
    )
    assert "nova" not in character_partitions(dagster_dev)  # the sensor is off: the UI adds it

    dialog = open_materialize_dialog(page, dagster_dev, "voice_sample")
    dialog.get_by_text("Add a partition").click()
    adder = page.locator("[role=dialog]").filter(has_text="Add a partition for character")
    adder.get_by_role("textbox").fill("nova")
    adder.get_by_role("button", name="Save").click()
    adder.wait_for(state="detached")
    pick(page, dialog, 0, ["nova"])
    pick(page, dialog, 1, ["en"])
    dialog.get_by_text("1 partition", exact=True).wait_for()
    shot(page, "materialize-dialog-nova-en")
    dialog.get_by_role("button", name="Launch 1 run").click()
    run_prefix = toast_id(page, "Launched run")

    assert "nova" in character_partitions(dagster_dev)
    run = wait_for_run(dagster_dev, "nova|en", run_prefix)
    assert {"key": "dagster/from_ui", "value": "true"} in run["tags"]
    assert [a["path"] for a in run["assetSelection"]] == [["voice_sample"]]
    events = materializations(dagster_dev, "voice_sample", ["nova|en"])
    assert [e["runId"] for e in events] == [run["runId"]]
    assert materializations(dagster_dev, "voice_sample", ["nova|ru"]) == []

    # The partition's page shows that run's metadata: the sources table names nova's clip, and
    # the duration is the one stored in the asset's manifest.
    stored = manifest(dagster_dev, "voice_sample", "nova", "en")
    partition_page(page, dagster_dev, "voice_sample", "nova|en")
    page.get_by_text("nova-en.wav", exact=True).wait_for()
    body = page.locator("body").inner_text()
    assert run_prefix in body
    assert re.search(rf"duration_s\s+{re.escape(str(stored['duration_s']))}", body), body[:3000]
    assert "nova/en" in body  # the folder path entry
    shot(page, "voice-sample-nova-en")


def test_corpus_coverage_table_and_chart_shown(page, dagster_dev: DagsterDev) -> None:
    add_character(
        dagster_dev,
        "pim",
        {"en": ("en-us", "Hi, I am Pim. I like short answers and long walks in the rain.")},
    )
    ensure_partition(dagster_dev, "pim")
    dialog = open_materialize_dialog(page, dagster_dev, "text_corpus")
    pick(page, dialog, 0, ["pim"])
    pick(page, dialog, 1, ["en"])
    dialog.get_by_text("1 partition", exact=True).wait_for()
    dialog.get_by_role("button", name="Launch 1 run").click()
    run_prefix = toast_id(page, "Launched run")
    wait_for_run(dagster_dev, "pim|en", run_prefix)

    stored = manifest(dagster_dev, "text_corpus", "pim", "en")
    partition_page(page, dagster_dev, "text_corpus", "pim|en")
    page.get_by_text(run_prefix).first.wait_for()
    body = page.locator("body").inner_text()
    assert re.search(rf"sentences\s+{len(stored['sentences'])}\b", body), body[:3000]
    shot(page, "text-corpus-pim-en")

    # Markdown entries open in a dialog: the coverage table, one row per stored phoneme.
    show_markdown(page, "coverage")
    table = page.locator("[role=dialog] table").filter(has_text="selected / random")
    shown = table.first.locator("tbody tr td:first-child").all_inner_texts()
    assert sorted(p.strip() for p in shown) == sorted(stored["coverage"])
    shot(page, "text-corpus-pim-en-coverage")
    page.keyboard.press("Escape")
    page.locator("[role=dialog]").wait_for(state="detached")

    # The chart: a PNG the browser decoded (a real plot, not a broken image).
    show_markdown(page, "chart")
    chart = page.locator("[role=dialog] img[alt='phoneme counts']")
    chart.wait_for()
    size = chart.evaluate("img => [img.complete, img.naturalWidth, img.naturalHeight]")
    assert size[0] and size[1] > 200 and size[2] > 100, size
    shot(page, "text-corpus-pim-en-chart")


def test_backfill_for_new_character_covers_exactly_its_languages(page, dagster_dev) -> None:
    add_character(
        dagster_dev,
        "orla",
        {
            "de": ("de", "Hallo, ich bin Orla. Ich helfe dir gern bei allem, was du vorhast."),
            "ru": ("ru", "Привет, я Орла. Я с радостью помогу тебе во всём."),
        },
    )
    ensure_partition(dagster_dev, "orla")
    dialog = open_materialize_dialog(page, dagster_dev, "voice_sample")
    pick(page, dialog, 0, ["orla"])
    pick(page, dialog, 1, ["de", "ru"])  # the languages of orla.yaml
    dialog.get_by_text("2 partitions", exact=True).wait_for()
    shot(page, "backfill-dialog-orla")
    dialog.get_by_role("button", name="Launch backfill").click()
    backfill_id = toast_id(page, "Created backfill")

    query = """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
      ... on PartitionBackfill { status partitionNames assetSelection { path }
      runs(limit: 10) { runId status tags { key value } } } } }"""

    def done():
        backfill = dagster_dev.graphql(query, id=backfill_id)["partitionBackfillOrError"]
        if backfill["status"] in {"COMPLETED_FAILED", "FAILED", "CANCELED"}:
            failures = [run_failure(dagster_dev, r["runId"]) for r in backfill["runs"]]
            pytest.fail(f"backfill {backfill_id} {backfill['status']}: {failures}")
        return backfill if backfill["status"] in {"COMPLETED", "COMPLETED_SUCCESS"} else None

    backfill = dagster_dev.wait_for(f"backfill {backfill_id}", done, RUN_TIMEOUT_S)
    assert sorted(backfill["partitionNames"]) == ["orla|de", "orla|ru"]
    assert [a["path"] for a in backfill["assetSelection"]] == [["voice_sample"]]
    run_partitions = sorted(
        t["value"] for r in backfill["runs"] for t in r["tags"] if t["key"] == "dagster/partition"
    )
    assert run_partitions == ["orla|de", "orla|ru"]
    assert {r["status"] for r in backfill["runs"]} == {"SUCCESS"}
    done_partitions = {
        e["partition"]
        for e in materializations(dagster_dev, "voice_sample", ["orla|de", "orla|en", "orla|ru"])
    }
    assert done_partitions == {"orla|de", "orla|ru"}
    for language in ("de", "ru"):
        assert manifest(dagster_dev, "voice_sample", "orla", language)["language"] == language

    page.goto(f"{dagster_dev.url}/runs/b/{backfill_id}")
    for partition in ("orla|de", "orla|ru"):
        page.get_by_text(partition, exact=True).first.wait_for()
    shot(page, "backfill-orla")


def test_review_finish_is_a_materialization_in_the_ui(page, dagster_dev: DagsterDev) -> None:
    """The annotation service's FINISH reports corpus_review to the live webserver."""
    from chara_assets.annotation.app import button_id
    from chara_assets.voice.review import ACCEPT, REJECT, review_folder, write_review_task
    from chara_resources.embedded.launcher import free_port

    sentences = [
        "The kettle on the stove began to whistle just as the guests arrived at the door.",
        "She folded the letter twice and hid it under a pile of old magazines on the shelf.",
        "A light rain fell over the harbour while the fishing boats slowly came back home.",
    ]
    folder = review_folder(dagster_dev.home, "kiki", "en")
    task = write_review_task(folder, "kiki", "en", sentences, dagster_url=dagster_dev.url)
    port = free_port()
    service = subprocess.Popen(
        [sys.executable, "-m", "chara_assets.annotation", str(task), "--port", str(port)],
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def serving():
            assert service.poll() is None, "the annotation service exited at start"
            try:
                return httpx.get(url, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        dagster_dev.wait_for("the annotation service", serving, RUN_TIMEOUT_S)
        page.goto(url)
        progress = page.locator("#chara-progress")
        for done, answer in enumerate([ACCEPT, REJECT, ACCEPT], start=1):
            page.locator(f"#{button_id(answer)}").click()
            progress.get_by_text(f"{done} of 3 decided").wait_for()
        page.locator(f"#{button_id('finish')}").click()
        page.get_by_text("reported to corpus_review").wait_for()
        shot(page, "review-finish")
    finally:
        os.killpg(service.pid, signal.SIGKILL)
        service.wait()

    events = dagster_dev.graphql(
        """{ assetOrError(assetKey: {path: ["corpus_review"]}) { ... on Asset {
             assetMaterializations(partitions: ["kiki|en"]) { partition metadataEntries {
             label ... on IntMetadataEntry { intValue } } } } } }"""
    )["assetOrError"]["assetMaterializations"]
    assert len(events) == 1
    counts = {e["label"]: e.get("intValue") for e in events[0]["metadataEntries"]}
    assert counts["count_yes"] == 2 and counts["count_no"] == 1 and counts["left"] == 0

    partition_page(page, dagster_dev, "corpus_review", "kiki|en")
    page.get_by_text("count_yes", exact=True).wait_for()
    body = page.locator("body").inner_text()
    assert re.search(r"count_yes\s+2\b", body) and re.search(r"count_no\s+1\b", body), body[:3000]
    shot(page, "corpus-review-kiki-en")


def test_run_for_a_language_the_character_lacks_fails_clearly(page, dagster_dev) -> None:
    add_character(
        dagster_dev,
        "tove",
        {"de": ("de", "Hallo, ich bin Tove. Ich spreche nur Deutsch, aber das sehr gern.")},
    )
    ensure_partition(dagster_dev, "tove")
    dialog = open_materialize_dialog(page, dagster_dev, "voice_sample")
    pick(page, dialog, 0, ["tove"])
    pick(page, dialog, 1, ["en"])  # not in tove.yaml
    dialog.get_by_text("1 partition", exact=True).wait_for()
    dialog.get_by_role("button", name="Launch 1 run").click()
    run_prefix = toast_id(page, "Launched run")
    run = wait_for_run(dagster_dev, "tove|en", run_prefix, expect="FAILURE")
    message = run_failure(dagster_dev, run["runId"])
    assert "character 'tove' does not speak 'en' (its languages: de)" in message, message
    assert materializations(dagster_dev, "voice_sample", ["tove|en"]) == []

    page.goto(f"{dagster_dev.url}/runs/{run['runId']}")  # the run's page shows why
    page.get_by_text("does not speak 'en'").first.wait_for()
    shot(page, "run-failed-tove-en")
