"""Ctrl-C and SIGTERM during training: finish the step, save, stop."""
from __future__ import annotations

import signal
import threading

from tqdm.auto import tqdm


def catch_signals(stop: list) -> dict:
    """SIGINT/SIGTERM set a flag the loop checks after each step (a second SIGINT interrupts at once)."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(signum, frame):
        if stop and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.append(signal.Signals(signum).name)
        tqdm.write(f"{signal.Signals(signum).name}: finishing this step and saving a checkpoint "
                   f"(Ctrl-C again to abort without saving)")

    return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
