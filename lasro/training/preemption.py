"""Stop requests: SIGTERM (a cluster preempting the job) and the first Ctrl-C ask the run to write a
checkpoint at its next safe point and exit; a second Ctrl-C aborts at once.

Under torchrun / accelerate launch every process gets the signal, but not at the same instant: at each
safe point the processes combine their requests (any one asking stops all), so they stop together.
"""
from __future__ import annotations

import logging
import signal
import threading

import torch

log = logging.getLogger("lasro")
EXIT_CODES = {signal.SIGTERM: 128 + signal.SIGTERM, signal.SIGINT: 128 + signal.SIGINT}


class Preempted(Exception):
    """The run stopped on request after writing ``checkpoint``; ``exit_code`` follows the shell's 128 + signal."""

    def __init__(self, signum: int, checkpoint: str | None):
        self.signum, self.checkpoint = signum, checkpoint
        self.exit_code = EXIT_CODES.get(signum, 1)
        name = signal.Signals(signum).name
        where = f"checkpoint {checkpoint} written" if checkpoint else "checkpoint written"
        super().__init__(f"stopped on {name}: {where}; continue with the same command and --resume latest")


class StopRequests:
    """Installs the handlers for the duration (main thread only; elsewhere it listens to nothing)."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> "StopRequests":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        if signum == signal.SIGINT and self.signum is not None:
            raise KeyboardInterrupt  # the second Ctrl-C: abort now
        self.signum = signum
        log.warning("%s received: the run writes a checkpoint at its next safe point and stops%s",
                    signal.Signals(signum).name, " (Ctrl-C again aborts at once)" if signum == signal.SIGINT else "")

    def agreed(self, acc) -> int | None:
        """The signal every process stops for (a request on any process counts), or None: call it at the
        same safe points on every process."""
        mine = torch.tensor([float(self.signum or 0)], device=acc.device)
        signum = int(acc.gather(mine).max()) if acc.num_processes > 1 else int(mine)
        return signum or None
