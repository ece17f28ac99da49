"""One writer at a time: the lake's writer lease, on a folder and on the S3 test server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.s3 import S3Server
from tests.reliability.helpers import cli_env, copy_raw, start_wikichurn, wikichurn
from wikichurn.core.settings import S3Settings, Settings
from wikichurn.pipeline.lakehouse.lock import (
    EXIT_LOCKED,
    FolderLeaseStore,
    LakeLockedError,
    LeaseInfo,
    LeaseStore,
    lease_store,
    try_acquire,
    writer_lock,
)


@pytest.fixture(params=["folder", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> LeaseStore:
    if request.param == "folder":
        return lease_store(Settings(lake_uri=str(tmp_path / "lake")))
    server: S3Server = request.getfixturevalue("s3_server")
    s3: S3Settings = request.getfixturevalue("s3_settings")
    bucket = server.make_bucket("lock")
    return lease_store(Settings(lake_uri=f"s3://{bucket}/lake", s3=s3))


def no_op(_why: str) -> None:
    pass


def write_foreign_lease(store: LeaseStore, generation: int, *, host: str, pid: int, expires_in: float) -> None:
    now = time.time()
    info = LeaseInfo("foreign", host, pid, "wikichurn pipeline run", now - 100, now + expires_in, generation)
    assert store.create(generation, info.to_json())


def test_second_writer_is_refused_with_the_holder_named(store: LeaseStore) -> None:
    first = try_acquire(store, ttl_s=30, command="first writer", on_lost=no_op)
    try:
        with pytest.raises(LakeLockedError) as refused:
            try_acquire(store, ttl_s=30, command="second writer", on_lost=no_op)
        message = str(refused.value)
        assert f"pid {os.getpid()}" in message and "'first writer'" in message and first.info.holder_id in message
        assert "--wait" in message
    finally:
        first.release()
    # Released: the next writer gets the lake at once, and no lease object is left behind.
    second = try_acquire(store, ttl_s=30, command="second writer", on_lost=no_op)
    second.release()
    assert store.generations() == []


def test_lease_object_names_holder_and_expiry(store: LeaseStore) -> None:
    lease = try_acquire(store, ttl_s=30, command="wikichurn pipeline run", on_lost=no_op)
    try:
        [generation] = store.generations()
        stored = json.loads(store.read(generation) or b"")
        assert stored["holder_id"] == lease.info.holder_id and stored["pid"] == os.getpid()
        assert stored["host"] and stored["command"] == "wikichurn pipeline run"
        assert 25 < stored["expires_at"] - time.time() <= 30
    finally:
        lease.release()


def test_expired_lease_of_another_host_is_taken_over(store: LeaseStore) -> None:
    write_foreign_lease(store, 7, host="elsewhere", pid=1, expires_in=-1)
    lease = try_acquire(store, ttl_s=30, command="me", on_lost=no_op)
    assert lease.info.generation == 8 and store.generations() == [8]  # the stale lease is gone
    lease.release()


def test_live_lease_of_another_host_is_respected_until_it_expires(store: LeaseStore) -> None:
    write_foreign_lease(store, 1, host="elsewhere", pid=1, expires_in=1.5)
    with pytest.raises(LakeLockedError, match="host elsewhere"):
        try_acquire(store, ttl_s=30, command="me", on_lost=no_op)
    time.sleep(1.6)
    try_acquire(store, ttl_s=30, command="me", on_lost=no_op).release()


def test_lease_of_a_dead_local_process_is_stale_at_once(store: LeaseStore) -> None:
    import socket

    dead = subprocess.Popen(["true"])
    dead.wait()
    write_foreign_lease(store, 3, host=socket.gethostname(), pid=dead.pid, expires_in=600)
    lease = try_acquire(store, ttl_s=30, command="me", on_lost=no_op)
    assert lease.info.generation == 4
    lease.release()


def test_heartbeat_keeps_the_lease_alive_past_its_ttl(store: LeaseStore) -> None:
    lease = try_acquire(store, ttl_s=1.2, command="long writer", on_lost=no_op)
    try:
        first_expiry = lease.info.expires_at
        time.sleep(2.5)  # two TTLs: without renewals the lease would be stale
        with pytest.raises(LakeLockedError):
            try_acquire(store, ttl_s=1.2, command="contender", on_lost=no_op)
        assert lease.info.expires_at > first_expiry + 1 and lease.lost is None
    finally:
        lease.release()


def test_superseded_holder_notices_and_stops_renewing(store: LeaseStore) -> None:
    lost: list[str] = []
    lease = try_acquire(store, ttl_s=1.2, command="paused writer", on_lost=lost.append)
    # Another writer decided our lease was stale (say we were frozen) and took the next generation.
    write_foreign_lease(store, lease.info.generation + 1, host="elsewhere", pid=1, expires_in=600)
    deadline = time.monotonic() + 5
    while not lost and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lost and "superseded" in lost[0]
    lease.release()
    # A holder that lost the lake touches nothing any more; the new holder's lease is intact.
    assert b'"foreign"' in (store.read(lease.info.generation + 1) or b"")


def test_exactly_one_of_many_simultaneous_writers_wins(store: LeaseStore) -> None:
    barrier = threading.Barrier(8)
    winners: list[object] = []
    refused: list[LakeLockedError] = []

    def contend() -> None:
        barrier.wait()
        try:
            winners.append(try_acquire(store, ttl_s=30, command="racer", on_lost=no_op))
        except LakeLockedError as err:
            refused.append(err)

    threads = [threading.Thread(target=contend) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1 and len(refused) == 7
    winners[0].release()  # type: ignore[attr-defined]


def test_wait_gets_the_lake_when_the_holder_releases(tmp_path: Path) -> None:
    settings = Settings(lake_uri=str(tmp_path / "lake"))
    holder = try_acquire(lease_store(settings), ttl_s=30, command="holder", on_lost=no_op)
    threading.Timer(1.0, holder.release).start()
    started = time.monotonic()
    with writer_lock(settings, command="waiter", wait=True, wait_timeout_s=20) as lease:
        assert lease.info.command == "waiter"
    assert 0.9 < time.monotonic() - started < 10


def test_wait_timeout_gives_up(tmp_path: Path) -> None:
    settings = Settings(lake_uri=str(tmp_path / "lake"))
    holder = try_acquire(lease_store(settings), ttl_s=30, command="holder", on_lost=no_op)
    try:
        with pytest.raises(LakeLockedError), writer_lock(settings, command="waiter", wait=True, wait_timeout_s=0.5):
            pass
    finally:
        holder.release()


def test_folder_create_is_exclusive_and_never_half_written(tmp_path: Path) -> None:
    folder = FolderLeaseStore(tmp_path / "_lock")
    assert folder.create(1, b'{"a": 1}') and not folder.create(1, b'{"b": 2}')
    assert folder.read(1) == b'{"a": 1}'
    assert [p.name for p in (tmp_path / "_lock").iterdir()] == ["lease-000000000001.json"]  # no temporaries left


# -- the CLI -----------------------------------------------------------------------------------


def wait_for(predicate: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.slow
def test_two_pipeline_runs_on_one_lake(small_mirror: Path, tmp_path: Path) -> None:
    raw, lake = copy_raw(small_mirror, tmp_path / "raw"), tmp_path / "lake"
    env = cli_env(raw, lake)
    first = start_wikichurn("pipeline", "run", "--json", env=env, cwd=tmp_path)
    waiter = first
    try:
        wait_for(lambda: bool(FolderLeaseStore(lake / "_lock").generations()))
        # Freeze the holder (a run on this small lake takes only seconds): it keeps the lake while stopped.
        os.kill(first.pid, signal.SIGSTOP)
        began = time.monotonic()
        refused = wikichurn("pipeline", "run", env=env, cwd=tmp_path)
        refused_s = time.monotonic() - began
        waiter = start_wikichurn("pipeline", "run", "--wait", "--json", env=env, cwd=tmp_path)
        time.sleep(2)
        assert waiter.poll() is None  # still waiting for the holder
        os.kill(first.pid, signal.SIGCONT)
        out, err = first.communicate(timeout=300)
        assert first.returncode == 0, err
        waited_out, waited_err = waiter.communicate(timeout=300)
    finally:
        for proc in (first, waiter):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    assert refused.returncode == EXIT_LOCKED, refused.stderr
    text = " ".join((refused.stdout + refused.stderr).split())
    assert f"pid {first.pid}" in text and "locked by another writer" in text and "Traceback" not in text
    assert refused_s < 15  # no Spark session was started: it only read the lease
    assert json.loads(out)["files_new"] == len(list(raw.glob("*/*/projectviews-*")))
    # The waiter ran after the first one finished: nothing was new for it.
    assert waiter.returncode == 0, waited_err
    assert json.loads(waited_out)["files_new"] == 0
    assert not (lake / "_lock").exists()


def test_lock_folder_removed_by_a_releasing_holder_mid_create_is_made_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Found by test_wait_gets_the_lake_when_the_holder_releases: the holder's release removes the
    # empty _lock folder between the waiter's mkdir and its mkstemp.
    import tempfile

    from wikichurn.pipeline.lakehouse import lock

    settings = Settings(lake_uri=str(tmp_path / "lake"))
    store = lease_store(settings)
    real_mkstemp, calls = tempfile.mkstemp, []

    def racing_mkstemp(*args: object, **kwargs: object) -> tuple[int, str]:
        calls.append(1)
        if len(calls) == 1:
            Path(str(kwargs["dir"])).rmdir()  # the holder's delete() wins the race once
        return real_mkstemp(*args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(lock.tempfile, "mkstemp", racing_mkstemp)
    lease = try_acquire(store, ttl_s=30, command="waiter", on_lost=no_op)
    assert lease is not None and len(calls) == 2
    lease.release()
