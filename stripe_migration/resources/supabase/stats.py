"""Per-client statistics of Supabase requests: HTTP requests by method, table and status, rows
read and written, retries, and the latest request URLs."""

from __future__ import annotations

import threading
from collections import Counter, deque
from urllib.parse import urlsplit


class SupabaseStats:
    """Thread-safe counters: HTTP requests by method, table and status, rows read and written,
    retries."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Zero every counter."""
        with self._lock:
            self.requests: Counter[tuple[str, str, str]] = Counter()
            # The latest requests only, so a long run does not grow it without bound.
            self.request_log: deque[tuple[str, str]] = deque(maxlen=10_000)
            self.rows_read = 0
            self.rows_written = 0
            self.retries = 0

    def record_request(self, method: str, url: str, status: str) -> None:
        """Count one HTTP request (``url`` is kept, without credentials, for inspection)."""
        table = _table_of(url)
        with self._lock:
            self.requests[(method, table, status)] += 1
            self.request_log.append((method, url))

    def add(self, *, rows_read: int = 0, rows_written: int = 0, retries: int = 0) -> None:
        """Add to the row and retry counters."""
        with self._lock:
            self.rows_read += rows_read
            self.rows_written += rows_written
            self.retries += retries

    def requests_to(self, table: str, method: str | None = None) -> list[str]:
        """URLs of the requests sent to ``table`` (and ``method``), in order."""
        with self._lock:
            return [
                url
                for m, url in self.request_log
                if _table_of(url) == table and (method is None or m == method)
            ]


def _table_of(url: str) -> str:
    path = urlsplit(url).path
    marker = "/rest/v1/"
    return path.split(marker, 1)[1] if marker in path else path
