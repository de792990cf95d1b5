"""The work cache on its own: keys, reuse, errors as data, hand deletion."""

import json

import pytest

from chara_resources.work_cache import WorkCache


def _compute_text(value: str):
    def compute(files):
        files.path(".txt").write_text(value.upper())
        return {"length": len(value)}

    return compute


def test_key_depends_on_inputs_and_params(tmp_path) -> None:
    cache = WorkCache(tmp_path)
    a = cache.step("s", {"rate": 1})
    b = cache.step("s", {"rate": 2})
    assert a.key({"x": 1}) != a.key({"x": 2})
    assert a.key({"x": 1}) != b.key({"x": 1})
    assert a.key({"x": 1, "y": 2}) == a.key({"y": 2, "x": 1})
    assert a.key({"x": 1}, label="Hello World").startswith("hello-world-")


def test_items_are_stored_readable_and_reused(tmp_path) -> None:
    step = WorkCache(tmp_path).step("upper")
    first = step.get_or_compute({"text": "abc"}, _compute_text("abc"), label="abc")
    assert first.files[".txt"].read_text() == "ABC"
    record = json.loads((step.folder / f"{first.key}.json").read_text())
    assert record["inputs"] == {"text": "abc"} and record["result"] == {"length": 3}

    again = WorkCache(tmp_path).step("upper")
    second = again.get_or_compute({"text": "abc"}, _compute_text("zzz"), label="abc")
    assert second.reused and second.result == {"length": 3}
    assert (again.computed, again.reused) == (0, 1)


def test_deleting_an_items_file_recomputes_it(tmp_path) -> None:
    step = WorkCache(tmp_path).step("upper")
    item = step.get_or_compute({"text": "abc"}, _compute_text("abc"))
    item.files[".txt"].unlink()
    step.get_or_compute({"text": "abc"}, _compute_text("abc"))
    assert step.computed == 2


def test_errors_recorded_as_data_and_retried(tmp_path) -> None:
    step = WorkCache(tmp_path).step("fails")

    def boom(files):
        files.path(".txt").write_text("partial")
        raise RuntimeError("decoder crashed")

    record = step.get_or_compute({"n": 1}, boom, record_errors=True)
    assert record.error == "RuntimeError: decoder crashed" and not record.ok
    assert not list(step.folder.glob("*.txt")) and not list(step.folder.glob(".*tmp*"))
    kept = step.get_or_compute({"n": 1}, boom, record_errors=True, retry_errors=False)
    assert kept.reused and kept.error
    with pytest.raises(RuntimeError):
        step.get_or_compute({"n": 1}, boom)


def test_step_names_are_checked(tmp_path) -> None:
    with pytest.raises(ValueError, match="work step name"):
        WorkCache(tmp_path).step("../escape")


def test_a_record_carries_the_hash_of_its_files(tmp_path) -> None:
    import hashlib

    step = WorkCache(tmp_path).step("upper")
    item = step.get_or_compute({"text": "abc"}, _compute_text("abc"))
    record = json.loads((step.folder / f"{item.key}.json").read_text())
    assert record["sha256"] == {".txt": hashlib.sha256(b"ABC").hexdigest()}


@pytest.mark.parametrize(
    "damage",
    [
        lambda path: path.write_bytes(path.read_bytes()[:1]),  # truncated
        lambda path: path.write_bytes(b"XYZ"),  # rewritten in place, same size
        lambda path: path.write_bytes(b""),  # emptied
    ],
    ids=["truncated", "same-size-rewrite", "emptied"],
)
def test_a_file_that_no_longer_matches_its_record_is_computed_again(tmp_path, damage) -> None:
    step = WorkCache(tmp_path).step("upper")
    item = step.get_or_compute({"text": "abc"}, _compute_text("abc"))
    damage(item.files[".txt"])

    again = WorkCache(tmp_path).step("upper")
    assert again.get(item.key) is None
    fixed = again.get_or_compute({"text": "abc"}, _compute_text("abc"))
    assert (again.computed, again.reused, again.damaged) == (1, 0, {item.key})
    assert fixed.files[".txt"].read_text() == "ABC"
    assert WorkCache(tmp_path).step("upper").get(item.key).result == {"length": 3}


def test_a_file_damaged_during_a_run_is_seen_by_the_same_step(tmp_path) -> None:
    step = WorkCache(tmp_path).step("upper")
    item = step.get_or_compute({"text": "abc"}, _compute_text("abc"))
    assert step.get(item.key) is not None  # verified once, remembered by size/mtime/inode
    item.files[".txt"].write_bytes(b"AB")  # (a new size: mtime may not tick within ~4 ms)
    assert step.get(item.key) is None


def test_records_from_before_hashes_are_still_read(tmp_path) -> None:
    step = WorkCache(tmp_path).step("upper")
    item = step.get_or_compute({"text": "abc"}, _compute_text("abc"))
    path = step.folder / f"{item.key}.json"
    record = json.loads(path.read_text())
    del record["sha256"]
    path.write_text(json.dumps(record))
    found = WorkCache(tmp_path).step("upper").get(item.key)
    assert found is not None and found.files[".txt"].read_text() == "ABC"
