"""Child processes of the orchestration commands: start, stop (whole process group), SIGTERM as Ctrl-C."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM to ``ulm run`` stops its Airflow child too (as Ctrl-C does)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stop(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def spawn(cmd: list[str], env: dict[str, str], log_file: Path) -> subprocess.Popen:
    fh = open(log_file, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the process
    return subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=die_with_parent)


PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """``preexec_fn`` of a child process: the kernel sends it ``sig`` when its parent dies (Linux), so a
    ``kill -9`` of the ULM command does not leave the child writing the warehouse on its own."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:  # not Linux: the parent's signal handlers and finally-blocks still stop the child
        return
    libc.prctl(PR_SET_PDEATHSIG, sig)
    if os.getppid() == 1:  # the parent died before prctl took effect
        os.kill(os.getpid(), sig)


def kill_descendants(timeout: float = 5.0) -> None:
    """Terminate every descendant of this process (dbt subprocesses start their own sessions), then kill the
    ones still alive after ``timeout`` seconds."""
    import psutil

    children = psutil.Process().children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.terminate()
    _, alive = psutil.wait_procs(children, timeout=timeout)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()
