"""The Sink contract: the same cases over every backend (LocalSink, also without hard links, MemorySink)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from rtsave_async.sinks import LocalSink, MemorySink, Sink
from support.sinks import NoHardLinkLocalSink

BACKENDS: dict[str, Callable[[Path], Sink]] = {
    "local": lambda root: LocalSink(root / "run"),
    "local-aiofiles": lambda root: LocalSink(root / "run", io="aiofiles"),
    "local-durable": lambda root: LocalSink(root / "run", durable=True),
    "local-no-hard-links": lambda root: NoHardLinkLocalSink(root / "run"),
    "memory": lambda root: MemorySink(),
}


@pytest.fixture(params=list(BACKENDS))
def sink(request: pytest.FixtureRequest, tmp_path: Path) -> Sink:
    return BACKENDS[request.param](tmp_path)


def run(coroutine):
    return asyncio.run(coroutine)


def test_create_refuses_an_existing_key_and_keeps_the_first_content(sink: Sink) -> None:
    async def scenario() -> bytes:
        await sink.start()
        await sink.create("episodes/a.json", b"first")
        with pytest.raises(FileExistsError):
            await sink.create("episodes/a.json", b"second")
        return await sink.read("episodes/a.json")

    assert run(scenario()) == b"first"


def test_replace_swaps_content_and_works_at_the_root(sink: Sink) -> None:
    async def scenario() -> bytes:
        await sink.replace("run.json", b"1")
        await sink.replace("run.json", b"2")
        return await sink.read("run.json")

    assert run(scenario()) == b"2"


def test_appends_accumulate_in_order(sink: Sink) -> None:
    async def scenario() -> bytes:
        assert sink.supports_append
        for part in (b"a", b"bc", b"def"):
            await sink.append("episodes/s.jsonl.zst.open", part)
        await sink.close()
        return await sink.read("episodes/s.jsonl.zst.open")

    assert run(scenario()) == b"abcdef"


def test_rename_publishes_and_never_overwrites(sink: Sink) -> None:
    async def scenario() -> list[str]:
        await sink.append("episodes/s.open", b"data")
        await sink.rename("episodes/s.open", "episodes/s")
        await sink.create("episodes/t", b"other")
        with pytest.raises(FileExistsError):
            await sink.rename("episodes/s", "episodes/t")
        assert await sink.read("episodes/t") == b"other"
        assert await sink.read("episodes/s") == b"data"
        return await sink.list("episodes")

    assert run(scenario()) == ["episodes/s", "episodes/t"]


def test_list_is_per_folder_sorted_and_leaves_out_temp_names(sink: Sink) -> None:
    async def scenario() -> tuple[list[str], list[str], list[str]]:
        for key in ("episodes/b.json", "episodes/a.json", "episodes/.a.json.1.0.tmp", "checkpoints/c.zip", "run.json"):
            await sink.create(key, b"x")
        return await sink.list("episodes"), await sink.list(""), await sink.list("missing")

    episodes, root, missing = run(scenario())
    assert episodes == ["episodes/a.json", "episodes/b.json"]
    assert root == ["run.json"] and missing == []


def test_delete_removes_and_a_missing_key_is_no_error(sink: Sink) -> None:
    async def scenario() -> list[str]:
        await sink.create("checkpoints/c.zip", b"x")
        await sink.delete("checkpoints/c.zip")
        await sink.delete("checkpoints/c.zip")
        with pytest.raises(FileNotFoundError):
            await sink.read("checkpoints/c.zip")
        return await sink.list("checkpoints")

    assert run(scenario()) == []


def test_url_names_the_key(sink: Sink) -> None:
    assert sink.url("episodes/a.json").endswith("episodes/a.json")


def test_exclusive_serializes_read_modify_replace(sink: Sink) -> None:
    async def add_one() -> None:
        async with sink.exclusive("run.json"):
            value = int(await sink.read("run.json"))
            await asyncio.sleep(0)  # another task may run here; the lock (or one loop) keeps it out
            await sink.replace("run.json", str(value + 1).encode())

    async def scenario() -> bytes:
        await sink.replace("run.json", b"0")
        await asyncio.gather(*(add_one() for _ in range(5)))
        return await sink.read("run.json")

    assert run(scenario()) == b"5"


def test_local_sink_keys_stay_files_under_the_root(tmp_path: Path) -> None:
    sink = LocalSink(tmp_path / "run")
    run(sink.create("episodes/a.json", b"x"))
    assert (tmp_path / "run" / "episodes" / "a.json").read_bytes() == b"x"
    assert sink.url("episodes/a.json") == str(tmp_path / "run" / "episodes" / "a.json")


def test_local_append_after_a_removed_folder_creates_it_again(tmp_path: Path) -> None:
    import shutil

    sink = LocalSink(tmp_path / "run")

    async def scenario() -> bytes:
        await sink.append("episodes/s.open", b"a")
        await sink.rename("episodes/s.open", "episodes/s")
        shutil.rmtree(tmp_path / "run" / "episodes")
        await sink.append("episodes/t.open", b"b")
        return await sink.read("episodes/t.open")

    assert run(scenario()) == b"b"


def test_size_counts_the_stored_bytes_and_refuses_a_missing_key(sink: Sink) -> None:
    async def scenario() -> int:
        await sink.create("custom/a.json", b"12345")
        with pytest.raises(FileNotFoundError):
            await sink.size("custom/missing.json")
        return await sink.size("custom/a.json")

    assert run(scenario()) == 5
