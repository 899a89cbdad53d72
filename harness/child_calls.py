"""A call that cannot be interrupted, run in a child process that is killed when its time is up.

The HSM probe's PKCS#11 calls, sslyze's scanner (through :func:`harness.deadline.run_in_child`)
and the wire capture each run in a child forked from a ``forkserver`` (the harness's own threads
are never forked). This module holds what they share: the child's answer as ``("ok", result)``
or ``("error", message)``, the start and the kill of the child, and the wait for one answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import Any

from harness.outcomes import ProbeError


@dataclass(frozen=True)
class ChildWords:
    """How a child's failures are told, each the start of a :class:`ProbeError` message.

    Attributes:
        process_name: the child process's name (seen in ``ps``).
        cannot_start: followed by ``: <reason>`` when the process cannot start.
        too_slow: the whole message when no answer came in time.
        ended: followed by `` (exit code N)`` when the process ended without an answer.
        crashed: the message for an exception other than ProbeError in the child, with
            ``{kind}`` for its type; empty: its type and the first line of its text.
    """

    process_name: str
    cannot_start: str
    too_slow: str
    ended: str
    crashed: str = ""


def child_outcome(function: Callable[..., Any], args: tuple[Any, ...], crashed: str = "") -> tuple[str, Any]:
    """``("ok", function(*args))``, or ``("error", message)``: a ProbeError's own message, any
    other exception named in one line (``crashed`` with ``{kind}``), never a traceback."""
    try:
        return ("ok", function(*args))
    except ProbeError as exc:
        return ("error", str(exc))
    except Exception as exc:
        if crashed:
            return ("error", crashed.replace("{kind}", type(exc).__name__))
        return ("error", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")


@contextmanager
def running_child(context: BaseContext, target: Callable[..., Any], args: tuple[Any, ...], *,
                  name: str, cannot_start: str) -> Iterator[BaseProcess]:
    """The started child process ``name``, killed (if still alive) and reaped when the block ends.

    Raises:
        ProbeError: the process could not start (``cannot_start: <reason>``).
    """
    child = context.Process(target=target, args=args, daemon=True, name=name)  # type: ignore[attr-defined]
    try:
        try:
            child.start()
        except OSError as exc:
            raise ProbeError(f"{cannot_start}: {exc.strerror or exc}") from None
        yield child
    finally:
        if child.is_alive():
            child.kill()
        if child.pid is not None:
            child.join(timeout=5)


def _answer(answer: Any, function: Callable[..., Any], args: tuple[Any, ...], crashed: str) -> None:
    """The child's side: its outcome through the pipe."""
    answer.send(child_outcome(function, args, crashed))
    answer.close()


def answer_from_child(context: BaseContext, function: Callable[..., Any], args: tuple[Any, ...],
                      timeout_s: float, words: ChildWords) -> Any:
    """``function(*args)`` in a child of ``context``, killed if it has not answered in ``timeout_s``.

    ``function`` must be a module-level function; its arguments and result must pickle.
    A :class:`ProbeError` it raises is raised here with its message.

    Raises:
        ProbeError: the child raised, ended without answering, could not start, or did not
            answer in time.
    """
    receiver, sender = context.Pipe(duplex=False)
    try:
        with running_child(context, _answer, (sender, function, args, words.crashed),
                           name=words.process_name, cannot_start=words.cannot_start) as child:
            sender.close()
            # poll is also true when the child ended without sending (recv then raises EOFError).
            if not receiver.poll(timeout_s):
                raise ProbeError(words.too_slow)
            try:
                status, payload = receiver.recv()
            except EOFError:
                child.join(timeout=5)
                raise ProbeError(f"{words.ended} (exit code {child.exitcode})") from None
    finally:
        receiver.close()
        sender.close()
    if status != "ok":
        raise ProbeError(str(payload))
    return payload
