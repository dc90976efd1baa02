"""Waking idle runners: LISTEN/NOTIFY on PostgreSQL, polling everywhere.

A notification only wakes; polling guarantees. Call ``notify_runners()`` inside the
transaction that made work runnable: PostgreSQL delivers it on commit and folds repeats
within one transaction into one, so a batch of runs costs one notification.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg
from django.db import connection

logger = logging.getLogger("runs.wakeup")

CHANNEL = "backstop_runs"
RECONNECT_SECONDS = 2.0


def notify_runners() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"NOTIFY {CHANNEL}")


class Listener(threading.Thread):
    """Call ``wake`` whenever a notification arrives; reconnect when the connection drops."""

    def __init__(self, settings_dict: dict[str, object], wake: Callable[[], None]) -> None:
        super().__init__(name="backstop-listener", daemon=True)
        self.params = {
            "dbname": settings_dict["NAME"],
            "user": settings_dict.get("USER") or None,
            "password": settings_dict.get("PASSWORD") or None,
            "host": settings_dict.get("HOST") or None,
            "port": settings_dict.get("PORT") or None,
        }
        self.wake = wake
        self.stopped = threading.Event()

    def run(self) -> None:
        params = {k: v for k, v in self.params.items() if v is not None}
        while not self.stopped.is_set():
            try:
                with psycopg.connect(**params, autocommit=True) as conn:  # type: ignore[arg-type]
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.wake()  # anything sent while we were away
                    while not self.stopped.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self.wake()
            except psycopg.Error as error:
                logger.warning("listener lost its connection (%s); polling until it is back", error)
                self.stopped.wait(RECONNECT_SECONDS)

    def stop(self) -> None:
        self.stopped.set()
