"""The SMTP queue's committer thread: a batch written and fsynced together, each message
answered for on its own (one that fails does not fail the others), and chores run in
order after what came before them, a failing one only logged."""

from __future__ import annotations

import threading
from pathlib import Path

from netkit.servers.smtp.store import Committer


def _committer(tmp_path: Path) -> tuple[Committer, Path]:
    active = tmp_path / "active"
    (tmp_path / "tmp").mkdir()
    active.mkdir()
    return Committer(active, lambda callback: callback()), active


def test_one_batch_each_message_answered_for(tmp_path: Path) -> None:
    committer, active = _committer(tmp_path)
    gate, finished = threading.Event(), threading.Event()
    results: dict[str, BaseException | None] = {}

    def done(name: str):
        def record(exc: BaseException | None) -> None:
            results[name] = exc
            if len(results) == 5:
                finished.set()
        return record

    committer.run_soon(gate.wait)  # holds the thread so that the five come as one batch
    for name in ("a", "b", "c"):
        committer.submit(tmp_path / "tmp" / name, active / name, (name.encode(), b"\n"),
                         None, done(name))
    # cannot be renamed (no such directory), cannot even be created
    committer.submit(tmp_path / "tmp" / "d", tmp_path / "missing" / "d", (b"d",), None,
                     done("d"))
    committer.submit(tmp_path / "missing" / "e", active / "e", (b"e",), None, done("e"))
    gate.set()
    assert finished.wait(10)
    committer.close()
    assert {k: v is None for k, v in results.items()} == \
        {"a": True, "b": True, "c": True, "d": False, "e": False}
    assert isinstance(results["d"], FileNotFoundError)
    assert sorted(p.name for p in active.iterdir()) == ["a", "b", "c"]
    assert (active / "b").read_bytes() == b"b\n"
    assert list((tmp_path / "tmp").iterdir()) == []  # the failed one's file removed


def test_a_spare_is_written_over_and_cut_to_length(tmp_path: Path) -> None:
    committer, active = _committer(tmp_path)
    spare = tmp_path / "spare-1"
    spare.write_bytes(b"an older and much longer message\n" * 10)
    finished = threading.Event()
    committer.submit(tmp_path / "tmp" / "x", active / "x", (b"new\n",), spare,
                     lambda exc: finished.set())
    assert finished.wait(10)
    committer.close()
    assert (active / "x").read_bytes() == b"new\n"
    assert not spare.exists()


def test_chores_in_order_and_a_failing_one_only_logged(tmp_path: Path, caplog) -> None:
    committer, active = _committer(tmp_path)
    seen: list[str] = []

    def fails() -> None:
        raise FileNotFoundError(2, "gone", "queue/active/X")
    committer.run_soon(lambda: seen.append("first"))
    committer.run_soon(fails)
    committer.run_soon(lambda: seen.append("after"))
    finished = threading.Event()
    committer.submit(tmp_path / "tmp" / "y", active / "y", (b"y",), None,
                     lambda exc: finished.set())
    assert finished.wait(10)  # the thread lives on after the failed chore
    committer.close()
    assert seen == ["first", "after"]
    assert "gone" in caplog.text
    assert (active / "y").read_bytes() == b"y"
