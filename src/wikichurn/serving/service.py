"""The service's lifecycle: load the model in the background, swap versions atomically.

The served model and snapshot live in one immutable :class:`ServingState`. A request reads
``service.current`` once and uses that object to the end, so a swap (one attribute assignment)
never changes the model under an in-flight request: it finishes on the old one.

Loading runs in a daemon thread so the event loop keeps answering (``/health``, ``/ready``, and
``/score`` on the old model) while MLflow downloads, and a registry that hangs cannot hold up
shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from wikichurn.core.settings import ChurnSettings
from wikichurn.serving.config import ServingSettings
from wikichurn.serving.registry import LoadedModel, ModelLoader, ModelRef, build_loaded_model
from wikichurn.serving.scoring import ServingState
from wikichurn.serving.snapshot import FeatureSnapshot, load_snapshot, sidecar_path

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class ReloadOutcome:
    changed: bool
    previous_version: str | None
    state: ServingState


class ScoringService:
    """Holds the current :class:`ServingState` and the tasks that (re)load it.

    Args:
        settings: the service settings.
        loader: where models come from (:class:`wikichurn.serving.registry.RegistryModelLoader`).
        base_churn: the churn definition the model's own ``meta["label"]`` refines.
    """

    def __init__(self, settings: ServingSettings, loader: ModelLoader, base_churn: ChurnSettings) -> None:
        self.settings = settings
        self.loader = loader
        self.base_churn = base_churn
        self.current: ServingState | None = None
        self.attempts = 0
        self.last_error: str | None = None
        # Why the last registry call failed (None after a success): shown by /model while the
        # loaded model keeps serving through a registry outage.
        self.registry_error: str | None = None
        self._snapshot: FeatureSnapshot | None = None  # the last snapshot read, served or not
        self._snapshot_stamp: tuple[tuple[int, int] | None, ...] | None = None
        self._snapshot_read_error: str | None = None
        self._lock: asyncio.Lock | None = None
        self._tasks: list[asyncio.Task[Any]] = []

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start loading in the background; wait up to ``startup_timeout_s`` for the first load."""
        self._lock = asyncio.Lock()
        first = asyncio.create_task(self._load_until_ready(), name="wikichurn-initial-load")
        self._tasks.append(first)
        if self.settings.reload_interval_s > 0:
            self._tasks.append(asyncio.create_task(self._watch_alias(), name="wikichurn-alias-watch"))
        if self.settings.startup_timeout_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(first), timeout=self.settings.startup_timeout_s)
        if self.current is None:
            log.warning("starting without a model (%s); /ready answers 503 until one loads", self.last_error)

    async def stop(self) -> None:
        """Cancel the background tasks and release the loader's resources."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        close = getattr(self.loader, "close", None)
        if callable(close):
            close()

    # -- reloading -------------------------------------------------------------------------------

    async def reload(self, *, force_model: bool = False, force_snapshot: bool = True) -> ReloadOutcome:
        """Re-resolve the alias; swap in the new version (and snapshot) in one assignment.

        Args:
            force_model: download and load the model even if the alias still names the served version.
            force_snapshot: re-read the snapshot even if its file did not change.

        Raises:
            ModelUnavailableError: the registry or the model failed; the served state is unchanged.
        """
        assert self._lock is not None, "start() first"
        async with self._lock:
            before = self.current
            try:
                ref = await run_in_daemon_thread(self.loader.resolve)
            except Exception as exc:
                self.registry_error = f"the model registry is unreachable or refused the alias: {exc}"
                raise
            self.registry_error = None
            if before is not None and ref.version == before.model.version and not force_model:
                model = before.model
            else:
                model = await run_in_daemon_thread(self._load_model, ref)
            snapshot, snapshot_error = await self._next_snapshot(model, force_snapshot)
            # Off the loop: building the state encodes every snapshot row for the model.
            state = await run_in_daemon_thread(ServingState, model, snapshot, snapshot_error)
            self.current = state  # the swap: requests that already hold `before` finish with it
            self.last_error = None
            previous = before.model.version if before is not None else None
            changed = before is None or model is not before.model
            if changed:
                log.info("serving %s (version %s, was %s)", ref.alias_uri, model.version, previous)
            return ReloadOutcome(changed=changed, previous_version=previous, state=state)

    def _load_model(self, ref: ModelRef) -> LoadedModel:
        return build_loaded_model(ref, self.loader.load(ref), self.base_churn)

    async def _next_snapshot(self, model: LoadedModel, force: bool) -> tuple[FeatureSnapshot | None, str | None]:
        path = Path(self.settings.snapshot_path)
        stamp = _file_stamp(path)
        keep = self._snapshot
        unchanged = stamp == self._snapshot_stamp and not force
        if keep is None and unchanged and self._snapshot_read_error:
            return None, self._snapshot_read_error  # still the same unreadable (or absent) file
        if keep is None or not unchanged:
            self._snapshot_stamp = stamp
            try:
                keep = await run_in_daemon_thread(load_snapshot, path)
                self._snapshot, self._snapshot_read_error = keep, None
            except Exception as exc:
                error = f"cannot read the feature snapshot {path}: {type(exc).__name__}: {exc}"
                self._snapshot_read_error = error
                if keep is None:
                    log.warning("%s", error)
                    return None, error
                log.warning("%s; keeping the previous one (as of %s)", error, keep.as_of)
        # A snapshot the model cannot use is not served: its domains get snapshot_unavailable.
        mismatch = _snapshot_mismatch(keep, model)
        if mismatch:
            return None, mismatch
        note = self._snapshot_read_error
        return keep, (f"{note}; serving the previous snapshot (as of {keep.as_of})" if note else None)

    async def _load_until_ready(self) -> None:
        delay = self.settings.retry_min_s
        while self.current is None:
            self.attempts += 1
            try:
                await self.reload()
                return
            except Exception as exc:
                self.last_error = str(exc)
                log.warning("model not loaded (attempt %d): %s; retrying in %.1f s", self.attempts, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.settings.retry_max_s)

    async def _watch_alias(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reload_interval_s)
            if self.current is None:
                continue  # the start-up loop is still trying
            try:
                await self.reload(force_snapshot=False)
            except Exception as exc:
                log.warning("periodic alias check failed (still serving version %s): %s", self.version, exc)

    @property
    def version(self) -> str | None:
        state = self.current
        return state.model.version if state is not None else None


def _snapshot_mismatch(snapshot: FeatureSnapshot | None, model: LoadedModel) -> str | None:
    if snapshot is None or not snapshot.rows:
        return None
    columns = next(iter(snapshot.rows.values())).features
    missing = [name for name in model.scorer.features if name not in columns]
    return f"the snapshot lacks features of the model: {missing}" if missing else None


def _file_stamp(path: Path) -> tuple[tuple[int, int] | None, ...]:
    """Modification time and size of the snapshot and of its sidecar (None: absent)."""

    def one(p: Path) -> tuple[int, int] | None:
        try:
            stat = p.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    return one(path), one(sidecar_path(path))


async def run_in_daemon_thread(func: Callable[..., T], *args: Any) -> T:
    """Run blocking ``func`` in a daemon thread and await its result.

    Unlike the default executor, a call stuck in the network (a registry that does not answer)
    neither blocks the loop nor keeps the process alive at shutdown.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def deliver(setter: Callable[[Any], None], value: Any) -> None:
        if not future.done():
            setter(value)

    def target() -> None:
        try:
            result = func(*args)
        except BaseException as exc:  # delivered to the awaiting task
            outcome: tuple[Callable[[Any], None], Any] = (future.set_exception, exc)
        else:
            outcome = (future.set_result, result)
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(deliver, *outcome)

    threading.Thread(target=target, name=f"wikichurn-{getattr(func, '__name__', 'load')}", daemon=True).start()
    return await future
