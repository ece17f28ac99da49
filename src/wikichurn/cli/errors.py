"""Failures of long-running commands as one clear message, not a traceback wall.

A storage outage surfaces as a botocore, gRPC or Spark Connect exception whose text runs over
dozens of lines. The operator needs what failed and why; ``-v`` still logs the whole traceback.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import typer
from rich.console import Console
from rich.markup import escape

from wikichurn.pipeline.lakehouse.lock import EXIT_LOCKED, LakeLockedError

log = logging.getLogger("wikichurn.cli")

_MAX_LINES = 4
_MAX_CHARS = 600


def summarize_error(exc: BaseException) -> str:
    """``Type: message``, cut to a few lines (Spark and gRPC errors carry pages of JVM/Rust context)."""
    text = str(exc).strip() or repr(exc)
    lines = [line for line in text.splitlines() if line.strip()][:_MAX_LINES]
    short = "\n".join(lines)
    if len(short) > _MAX_CHARS:
        short = short[:_MAX_CHARS] + " ..."
    return f"{type(exc).__name__}: {short}"


@contextlib.contextmanager
def fail_clearly(command: str, console: Console) -> Iterator[None]:
    """Turn an exception escaping ``command`` into a short red message and a non-zero exit.

    Exit status: :data:`~wikichurn.pipeline.lakehouse.lock.EXIT_LOCKED` (75) when another writer holds
    the lake, 130 when interrupted (Ctrl-C, or the writer lease was lost), 1 for any other failure.
    """
    try:
        yield
    except typer.Exit:
        raise
    except LakeLockedError as exc:
        console.print(f"[yellow]{command}: {escape(str(exc))}[/yellow]")
        raise typer.Exit(code=EXIT_LOCKED) from None
    except KeyboardInterrupt:
        console.print(f"[red]{command}: interrupted; committed work is kept, run it again to finish[/red]")
        raise typer.Exit(code=130) from None
    except Exception as exc:
        log.debug("%s failed", command, exc_info=True)
        console.print(
            f"[red]{command} failed: {escape(summarize_error(exc))}[/red]\n"
            "Committed work is kept; run the command again once the cause is fixed (-v shows the traceback)."
        )
        raise typer.Exit(code=1) from None
