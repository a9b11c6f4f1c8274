"""The queue on disk: one file per message (the envelope as one JSON line, then the
message), written so that an acknowledged message survives SIGKILL and power loss.

    queue_dir/tmp/ID        being written (never read back: removed on start)
    queue_dir/active/ID     acknowledged: the envelope line, then the content
    queue_dir/spare/N       files of delivered messages, kept to be written over

`put` writes tmp/ID, fsyncs it, renames it into active/ and fsyncs the directory, and
only then returns: the caller answers 250 after that. A state change rewrites the
envelope the same way (tmp, fsync, rename, fsync). A file in tmp/ at start is a
message whose DATA was not acknowledged: it is removed, never delivered. Maildir
delivery (tmp/ then new/) is the same dance.

Why spares: ext4 skips inodes freed in the last minutes when it allocates one, walking
the inode bitmap past each (`recently_deleted`); at a thousand messages a second, a
new file then cost ~0.5 ms of kernel time (perf). A delivered message's file is renamed
into spare/ and the next message is written over it: no inode is freed or allocated.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import queue
import secrets
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from netkit.proto.smtp.envelope import Envelope

log = logging.getLogger("netkit.smtp")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DirSync:
    """fsync of one directory shared by the threads that renamed into it meanwhile (group
    commit): ten sessions finishing DATA at once cost one directory fsync, not ten. A
    caller returns only once an fsync that began after its rename has ended."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cond = threading.Condition()
        self._requested = 0
        self._done = 0
        self._running = False

    def sync(self) -> None:
        with self._cond:
            self._requested += 1
            mine = self._requested
            while self._done < mine and self._running:
                self._cond.wait()
            if self._done >= mine:
                return
            self._running = True
            target = self._requested  # every rename counted so far is on disk after this
        try:
            _fsync_dir(self.path)
        finally:
            with self._cond:
                self._running = False
                self._done = max(self._done, target)
                self._cond.notify_all()


FSYNC_THREADS = 8  # fsyncs of one batch in flight together
Done = Callable[[BaseException | None], None]
StrPath = str | Path
_Job = tuple[StrPath, StrPath, tuple[bytes, ...], StrPath | None, Done]  # submit's


class Committer:
    """One thread that writes new queue files and makes them durable, in batches (group
    commit).

    The event loop hands over the message (its parts, where it goes, a spare file to
    write over); this thread writes the files of a batch, syncs them all together,
    renames them into active/, fsyncs active/ once for the whole batch, and only then
    reports every message of the batch done, through `notify` (one call per batch: the
    event loop's call_soon_threadsafe). Even the open and the write stay off the event
    loop: on ext4 they wait for the journal while another file's fsync commits it (seen
    as 15% of the loop's time in open(O_TRUNC) before they moved here). One thread
    instead of a worker per message: thread hand-offs and GIL switches cost more CPU
    than the disk here (bench/smtp.py)."""

    def __init__(self, directory: Path, notify: Callable[[Callable[[], None]], None]) -> None:
        self.directory = directory
        self.notify = notify
        self._queue: queue.SimpleQueue[_Job | Callable[[], None] | None] = queue.SimpleQueue()
        self._pool = ThreadPoolExecutor(FSYNC_THREADS, thread_name_prefix="netkit-smtp-fsync")
        self._thread = threading.Thread(target=self._run, name="netkit-smtp-commit",
                                        daemon=True)
        self._thread.start()

    def submit(self, tmp: StrPath, final: StrPath, parts: tuple[bytes, ...],
               spare: StrPath | None, done: Done) -> None:
        """Write `parts` over the file `spare` (or into a new file `tmp`), make it durable
        as `final`, then `done(None)`, or `done(error)`."""
        self._queue.put((tmp, final, parts, spare, done))

    def run_soon(self, chore: Callable[[], None]) -> None:
        """`chore()` on this thread, after what was submitted before it; nobody waits for
        it (a delivered message's file going back to spare/: a trip to a thread of its
        own and back cost the event loop more than the rename)."""
        self._queue.put(chore)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(5)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            batch: list[_Job] = []
            chores: list[Callable[[], None]] = []
            while item is not None:
                if callable(item):
                    chores.append(item)
                else:
                    batch.append(item)
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                results = self._commit(batch)
                self.notify(lambda results=results: [done(exc) for done, exc in results])
            for chore in chores:
                try:
                    chore()
                except OSError as exc:  # a file left behind is found again at start
                    log.warning("smtp: queue: %s", exc)
            if item is None:
                self._pool.shutdown()
                return

    def _commit(self, batch: list[_Job]) -> list[tuple[Done, BaseException | None]]:
        """Write every file of the batch, fsync them all at once, rename them into
        active/, fsync active/ once."""
        written: list[tuple[int, StrPath, StrPath, Done]] = []
        results: list[tuple[Done, BaseException | None]] = []
        for tmp, final, parts, spare, done in batch:
            # a spare is written where it lies (spare/ holds nothing anyone reads: a
            # crash mid-write leaves a spare), then renamed into active/
            path = spare or tmp
            try:
                written.append((_write_file(path, parts, truncate=spare is not None),
                                path, final, done))
            except OSError as exc:
                _discard(path)
                results.append((done, exc))
        synced = self._fsync_all([fd for fd, *_ in written])
        for (fd, path, final, done), error in zip(written, synced, strict=True):
            os.close(fd)
            try:
                if error is not None:
                    raise error
                os.rename(path, final)
                results.append((done, None))
            except OSError as exc:
                _discard(path)
                results.append((done, exc))
        if any(exc is None for _, exc in results):
            try:
                _fsync_dir(self.directory)
            except OSError as exc:
                results = [(done, e or exc) for done, e in results]
        return results

    def _fsync_all(self, fds: list[int]) -> list[OSError | None]:
        """fdatasync each file, all in flight together: the block layer merges the cache
        flushes of concurrent syncs, so a batch waits for about one flush, not one per
        file. fdatasync still writes what reading the data back needs (the size, the
        blocks: POSIX), and skips only the times, whose inode write a full fsync adds."""
        def fsync(fd: int) -> OSError | None:
            try:
                os.fdatasync(fd)
            except OSError as exc:
                return exc
            return None
        if len(fds) <= 1:
            return [fsync(fd) for fd in fds]
        return list(self._pool.map(fsync, fds))


def _discard(path: StrPath) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _write_file(path: StrPath, parts: tuple[bytes, ...], truncate: bool) -> int:
    """`parts` in `path` (created, or an old file written over and cut to the new length
    when `truncate`); the open descriptor, not yet synced. One writev, not a write per
    part: every system call hands the GIL to the event loop and back. A spare of the
    same length is not truncated: that would dirty its inode for nothing."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        size = sum(map(len, parts))
        written = os.writev(fd, parts)
        if written < size:  # a short write: the rest, piece by piece
            view = memoryview(b"".join(parts))[written:]
            while view:
                view = view[os.write(fd, view):]
        if truncate and os.fstat(fd).st_size != size:
            os.ftruncate(fd, size)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _write_durably(tmp: Path, final: Path, parts: list[bytes],
                   directory: DirSync | None = None) -> None:
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for part in parts:
            view = memoryview(part)
            while view:
                view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, final)
    if directory is not None:
        directory.sync()
    else:
        _fsync_dir(final.parent)


SPARES = 4096  # spare files kept at most (a second or two of traffic)
_SERIAL = itertools.count()
_PROCESS = f"{os.getpid() & 0xFFFF:04x}"


def new_id() -> str:
    """Sortable by arrival and unique: microseconds, this process, a serial. (Not random
    bytes: os.urandom cost 0.55 ms a call on the benchmark machine, on the event loop.)"""
    return f"{time.time_ns() // 1000:x}{_PROCESS}{next(_SERIAL) & 0xFFFFF:05x}".upper()


class QueueStore:
    """The queue directory. Opened by the running relay, it also keeps every envelope
    in memory (`envelopes()` then reads no file); the `queue` command reads the disk."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.tmp = directory / "tmp"
        self.active = directory / "active"
        self._dirsync = DirSync(self.active)
        self.spare = directory / "spare"
        # the same as strings: a pathlib join cost ~2 us, four a message
        self._tmp_s, self._active_s, self._spare_s = map(str, (self.tmp, self.active,
                                                             self.spare))
        self._index: dict[str, Envelope] | None = None
        self._lock = threading.Lock()
        self._spares: list[StrPath] = []
        self._serial = 0

    def open(self) -> int:
        """Make the directories; drop unacknowledged files; load the envelopes; return
        how many unacknowledged files were dropped."""
        for d in (self.dir, self.tmp, self.active, self.spare):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        dropped = 0
        for leftover in self.tmp.iterdir():
            leftover.unlink()
            dropped += 1
        index = {e.id: e for e in self._scan()}
        spares = sorted(self.spare.iterdir())
        with self._lock:
            self._index = index
            self._spares = spares
            self._serial = max((int(p.name) for p in spares if p.name.isdigit()), default=0)
        return dropped

    def put_soon(self, envelope: Envelope, content: bytes, committer: Committer,
                 done: Done) -> None:
        """Write the message and let `committer` make it durable; `done(None)` once it is
        (the 250 may be sent then), `done(error)` if it could not be."""
        tmp = f"{self._tmp_s}/{envelope.id}"
        spare = self._take_spare()

        def committed(exc: BaseException | None) -> None:
            if exc is None:
                self._remember(envelope)
            done(exc)
        committer.submit(tmp, f"{self._active_s}/{envelope.id}",
                         (envelope.to_json(), b"\n", content),
                         spare, committed)

    def update(self, envelope: Envelope) -> None:
        """Rewrite the envelope of a queued message (its content kept), atomically."""
        content = self.content(envelope.id)
        _write_durably(self.tmp / (envelope.id + ".new"), self.active / envelope.id,
                       [envelope.to_json(), b"\n", content], self._dirsync)
        self._remember(envelope)

    def remove(self, message_id: str, committer: Committer | None = None) -> None:
        """The message is done: its file becomes a spare (or is unlinked when there are
        enough), by `committer`'s thread when given. Not fsynced: a crash can only bring
        the message back, delivered twice, which SMTP allows (RFC 5321 6.1); losing one
        it does not."""
        path = f"{self._active_s}/{message_id}"
        with self._lock:
            if self._index is not None:
                self._index.pop(message_id, None)
            keep = len(self._spares) < SPARES
            if keep:
                self._serial += 1
                spare = f"{self._spare_s}/{self._serial}"
        if committer is not None:
            committer.run_soon(lambda: self._retire(path, spare if keep else None))
        else:
            self._retire(path, spare if keep else None)

    def _retire(self, path: str, spare: str | None) -> None:
        try:
            if spare is not None:
                os.rename(path, spare)
                with self._lock:
                    self._spares.append(spare)
            else:
                os.unlink(path)
        except FileNotFoundError:
            pass

    def _take_spare(self) -> StrPath | None:
        with self._lock:
            return self._spares.pop() if self._spares else None

    def _remember(self, envelope: Envelope) -> None:
        with self._lock:
            if self._index is not None:
                self._index[envelope.id] = envelope

    def get(self, message_id: str) -> Envelope | None:
        """A queued message's envelope, from memory (the running relay's store)."""
        with self._lock:
            return self._index.get(message_id) if self._index is not None else None

    def envelopes(self) -> list[Envelope]:
        """Every queued message's envelope, oldest first."""
        with self._lock:
            if self._index is not None:
                return [self._index[k] for k in sorted(self._index)]
        return self._scan()

    def _scan(self) -> list[Envelope]:
        """The envelopes on disk (first lines only)."""
        out = []
        for path in sorted(self.active.iterdir()) if self.active.exists() else []:
            try:
                with path.open("rb") as f:
                    out.append(Envelope.from_json(f.readline()))
            except (OSError, ValueError, TypeError, KeyError):
                continue  # half a file cannot be here (renames are atomic); be safe anyway
        return out

    def content(self, message_id: str) -> bytes:
        with (self.active / message_id).open("rb") as f:
            f.readline()
            return f.read()


def deliver_to_maildir(maildir: Path, content: bytes) -> Path:
    """The Maildir way: write tmp/NAME, fsync, rename into new/NAME, fsync new/."""
    for sub in ("tmp", "new", "cur"):
        (maildir / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
    name = f"{time.time_ns()}.P{os.getpid()}R{secrets.token_hex(6)}.{socket.gethostname()}"
    final = maildir / "new" / name
    _write_durably(maildir / "tmp" / name, final, [content])
    return final
