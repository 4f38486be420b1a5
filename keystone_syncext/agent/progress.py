"""A one-line progress bar on a terminal (the seed shows one)."""

import sys
import time


class Progress:
    """A one-line progress bar on a terminal (standard error)."""

    def __init__(self, label: str, total: int, stream=None):
        self.label, self.total, self.done = label, max(total, 1), 0
        self.stream = stream or sys.stderr
        self.last = 0.0

    def add(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= 0.2 or self.done >= self.total:
            self.last = now
            width = 30
            filled = min(width, width * self.done // self.total)
            self.stream.write(
                f'\r{self.label} [{"#" * filled}{"." * (width - filled)}] '
                f'{self.done}/{self.total}')
            self.stream.flush()

    def close(self) -> None:
        self.stream.write('\n')
        self.stream.flush()
