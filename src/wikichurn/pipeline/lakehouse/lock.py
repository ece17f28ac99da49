"""One writer at a time: a lease on the lake, taken with an atomic create, renewed by a heartbeat.

Leases are small JSON objects under ``<lake_uri>/_lock/``, named ``lease-<generation>.json``. The
highest generation is the current lease. To take the lake a writer creates the next generation with
an *atomic create*, which exactly one contender wins:

- on a folder, the lease is written to a private temporary file and ``os.link``-ed to its name
  (``link`` fails if the name exists, like ``O_EXCL``, and the lease is never seen half-written);
- on S3, a ``PUT`` with ``If-None-Match: *`` (answered ``412 Precondition Failed`` when the
  object exists; SeaweedFS and AWS S3 both honour it).

A lease names its holder (id, host, pid, start) and an expiry. A background thread renews it every
``ttl / 3`` seconds; a holder that stops renewing (killed, frozen, partitioned) loses the lake when
the lease expires, and a lease whose holder is a dead process of this very host is stale at once.
A holder that finds its lease expired, superseded or gone stops renewing and calls ``on_lost`` (by
default it interrupts the main thread): it never renews a lease it may no longer own.

Clocks: expiry is wall-clock UTC, so the hosts sharing a lake need clocks within a fraction of the
TTL of each other (NTP gives milliseconds).
"""

from __future__ import annotations

import _thread
import contextlib
import json
import logging
import os
import re
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from wikichurn.core.storage import s3_client

if TYPE_CHECKING:
    from wikichurn.core.settings import Settings

log = logging.getLogger(__name__)

LOCK_FOLDER = "_lock"
_LEASE_NAME = re.compile(r"^lease-(\d{12})\.json$")
# Exit status of a command refused because another writer holds the lake (BSD EX_TEMPFAIL).
EXIT_LOCKED = 75


class LakeLockedError(RuntimeError):
    """Another writer holds the lake."""

    def __init__(self, lake: str, holder: LeaseInfo) -> None:
        self.holder = holder
        left = max(0.0, holder.expires_at - time.time())
        super().__init__(
            f"the lake {lake} is locked by another writer: {holder.describe()}; its lease expires in "
            f"{left:.0f} s unless renewed. Retry later, or pass --wait to wait for it."
        )


@dataclass(frozen=True)
class LeaseInfo:
    """What a lease object says about its holder."""

    holder_id: str
    host: str
    pid: int
    command: str
    acquired_at: float  # epoch seconds
    expires_at: float  # epoch seconds
    generation: int = 0

    def describe(self) -> str:
        since = datetime.fromtimestamp(self.acquired_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"{self.command!r} (pid {self.pid} on host {self.host}, holder {self.holder_id}, since {since})"

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes, generation: int) -> LeaseInfo | None:
        try:
            raw = json.loads(data)
            return cls(
                holder_id=str(raw["holder_id"]),
                host=str(raw["host"]),
                pid=int(raw["pid"]),
                command=str(raw.get("command", "?")),
                acquired_at=float(raw["acquired_at"]),
                expires_at=float(raw["expires_at"]),
                generation=generation,
            )
        except (ValueError, KeyError, TypeError):
            return None


class LeaseStore(Protocol):
    """The four operations a lease needs from storage."""

    location: str

    def generations(self) -> list[int]:
        """Generations of the lease objects present, ascending."""
        ...

    def read(self, generation: int) -> bytes | None:
        """The lease object's bytes, or None when it does not exist."""
        ...

    def create(self, generation: int, data: bytes) -> bool:
        """Create the object only if it does not exist (atomically); False when it does."""
        ...

    def replace(self, generation: int, data: bytes) -> None:
        """Overwrite the object (the holder renewing its own lease)."""
        ...

    def delete(self, generation: int) -> None:
        """Remove the object (missing is fine)."""
        ...


def _name(generation: int) -> str:
    return f"lease-{generation:012d}.json"


class FolderLeaseStore:
    """Leases in a local folder: ``link(2)`` of a complete temporary file is the atomic create."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.location = str(folder)

    def generations(self) -> list[int]:
        if not self.folder.is_dir():
            return []
        return sorted(int(m.group(1)) for p in self.folder.iterdir() if (m := _LEASE_NAME.match(p.name)))

    def read(self, generation: int) -> bytes | None:
        try:
            return (self.folder / _name(generation)).read_bytes()
        except FileNotFoundError:
            return None

    def _temporary(self, data: bytes) -> str:
        # A releasing holder removes the empty folder (delete): it can vanish between our mkdir
        # and mkstemp, so make it again. Once our temporary is in it, it is not empty any more.
        for attempt in range(10):
            self.folder.mkdir(parents=True, exist_ok=True)
            try:
                fd, tmp = tempfile.mkstemp(prefix=".lease-", suffix=".tmp", dir=self.folder)
                break
            except FileNotFoundError:
                if attempt == 9:
                    raise
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        return tmp

    def create(self, generation: int, data: bytes) -> bool:
        tmp = self._temporary(data)
        try:
            os.link(tmp, self.folder / _name(generation))  # EEXIST when another writer won
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)

    def replace(self, generation: int, data: bytes) -> None:
        os.replace(self._temporary(data), self.folder / _name(generation))

    def delete(self, generation: int) -> None:
        (self.folder / _name(generation)).unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # leave no empty _lock folder in the lake root
            self.folder.rmdir()


class S3LeaseStore:
    """Leases under an S3 prefix: ``PUT`` with ``If-None-Match: *`` is the atomic create."""

    def __init__(self, client: Any, bucket: str, prefix: str) -> None:
        self.client, self.bucket, self.prefix = client, bucket, prefix.strip("/")
        self.location = f"s3://{bucket}/{self.prefix}"

    def _key(self, generation: int) -> str:
        return f"{self.prefix}/{_name(generation)}"

    def generations(self) -> list[int]:
        found: list[int] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix + "/"):
            for obj in page.get("Contents", []):
                match = _LEASE_NAME.match(obj["Key"].rsplit("/", 1)[-1])
                if match:
                    found.append(int(match.group(1)))
        return sorted(found)

    def read(self, generation: int) -> bytes | None:
        try:
            return bytes(self.client.get_object(Bucket=self.bucket, Key=self._key(generation))["Body"].read())
        except self.client.exceptions.NoSuchKey:
            return None

    def create(self, generation: int, data: bytes) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(generation), Body=data, IfNoneMatch="*")
            return True
        except ClientError as err:
            # 412 when the object exists; 409 when a concurrent conditional PUT is in flight.
            if err.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            raise

    def replace(self, generation: int, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(generation), Body=data)

    def delete(self, generation: int) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(generation))


def lease_store(settings: Settings) -> LeaseStore:
    """Where the lake's leases live: ``<lake_uri>/_lock``."""
    uri = settings.lake_uri
    if settings.is_s3(uri):
        bucket, _, prefix = uri.split("://", 1)[1].partition("/")
        return S3LeaseStore(s3_client(settings.s3), bucket, f"{prefix.strip('/')}/{LOCK_FOLDER}".lstrip("/"))
    return FolderLeaseStore(Path(uri.removeprefix("file://")).expanduser().resolve() / LOCK_FOLDER)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _is_stale(info: LeaseInfo | None, now: float) -> bool:
    if info is None:  # unreadable: only a foreign writer could have put it there; treat as gone
        return True
    if info.expires_at <= now:
        return True
    # A crashed holder of this host need not be waited for: its pid is gone.
    return info.host == socket.gethostname() and not _pid_alive(info.pid)


class Lease:
    """A held lease; renewed in the background until :meth:`release`."""

    def __init__(
        self,
        store: LeaseStore,
        info: LeaseInfo,
        ttl_s: float,
        on_lost: Callable[[str], None],
    ) -> None:
        self.store, self.info, self.ttl_s, self.on_lost = store, info, ttl_s, on_lost
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._heartbeat, name="wikichurn-lease", daemon=True)
        self._thread.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                self.renew()
            except Exception as exc:  # storage unreachable: keep trying until the lease runs out
                if time.time() >= self.info.expires_at:
                    self._lose(f"could not renew the lease before it expired: {exc}")
                    return
                log.warning("lease renewal failed (retrying): %s", exc)
            if self.lost:
                return

    def renew(self) -> None:
        """Push the expiry ``ttl_s`` ahead, after checking the lease is still ours and unexpired."""
        if self.lost:
            return
        now = time.time()
        current = LeaseInfo.from_json(self.store.read(self.info.generation) or b"", self.info.generation)
        newer = [g for g in self.store.generations() if g > self.info.generation]
        if current is None or current.holder_id != self.info.holder_id:
            self._lose("the lease object is gone or belongs to another holder")
        elif newer:
            self._lose(f"a newer lease (generation {newer[-1]}) superseded ours")
        elif current.expires_at <= now:
            self._lose("the lease expired before it could be renewed")
        else:
            info = LeaseInfo(**{**asdict(self.info), "expires_at": now + self.ttl_s})
            self.store.replace(self.info.generation, info.to_json())
            self.info = info

    def _lose(self, why: str) -> None:
        self.lost = why
        log.error("lost the lake's writer lease: %s", why)
        self.on_lost(why)

    def release(self) -> None:
        """Stop renewing and delete the lease (unless another holder has it by now)."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        if self.lost:
            return
        with contextlib.suppress(Exception):  # an unreachable store: the lease simply expires
            current = LeaseInfo.from_json(self.store.read(self.info.generation) or b"", self.info.generation)
            if current is not None and current.holder_id == self.info.holder_id:
                self.store.delete(self.info.generation)


def _interrupt_main(_why: str) -> None:
    _thread.interrupt_main()


def try_acquire(
    store: LeaseStore,
    *,
    ttl_s: float,
    command: str,
    on_lost: Callable[[str], None] = _interrupt_main,
) -> Lease:
    """Take the lake now, or raise :class:`LakeLockedError` naming the live holder."""
    holder_id = uuid.uuid4().hex[:12]
    for _ in range(50):  # each retry means another contender just won or released a generation
        generations = store.generations()
        top = generations[-1] if generations else 0
        now = time.time()
        if top:
            data = store.read(top)
            if data is None:
                continue  # released meanwhile: list again
            current = LeaseInfo.from_json(data, top)
            if not _is_stale(current, now):
                assert current is not None
                raise LakeLockedError(store.location.removesuffix(f"/{LOCK_FOLDER}"), current)
            log.warning("taking over a stale lease: %s", current.describe() if current else f"generation {top}")
        info = LeaseInfo(holder_id, socket.gethostname(), os.getpid(), command, now, now + ttl_s, top + 1)
        if store.create(top + 1, info.to_json()):
            for old in generations:  # superseded leases: nobody may renew them any more
                with contextlib.suppress(Exception):
                    store.delete(old)
            log.info("writer lease taken on %s (generation %d, ttl %.0f s)", store.location, top + 1, ttl_s)
            return Lease(store, info, ttl_s, on_lost)
    raise RuntimeError(f"could not take the lease on {store.location}: too much contention")


@contextlib.contextmanager
def writer_lock(
    settings: Settings,
    *,
    command: str,
    wait: bool = False,
    wait_timeout_s: float | None = None,
    on_lost: Callable[[str], None] = _interrupt_main,
) -> Iterator[Lease]:
    """Hold the lake's writer lease for the ``with`` block.

    Args:
        settings: ``lake_uri`` (and ``s3``) locate the lease; ``pipeline.lock_ttl_s`` is its TTL.
        command: what the holder runs, shown to a refused contender.
        wait: wait for the holder to release (or its lease to expire) instead of failing.
        wait_timeout_s: give up waiting after this long (None: wait forever).
        on_lost: called (from the heartbeat thread) if the lease is lost while held.

    Raises:
        LakeLockedError: the lake is held and ``wait`` is False (or the wait timed out).
    """
    store = lease_store(settings)
    ttl_s = settings.pipeline.lock_ttl_s
    deadline = None if wait_timeout_s is None else time.monotonic() + wait_timeout_s
    announced = False
    while True:
        try:
            lease = try_acquire(store, ttl_s=ttl_s, command=command, on_lost=on_lost)
            break
        except LakeLockedError as err:
            if not wait or (deadline is not None and time.monotonic() >= deadline):
                raise
            if not announced:
                log.info("waiting for the lake: held by %s", err.holder.describe())
                announced = True
            time.sleep(min(1.0, ttl_s / 6))
    try:
        yield lease
    finally:
        lease.release()
