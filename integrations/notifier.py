"""The embedded ``Notifier``: release news goes to the log (and so to the worker's console)."""

from __future__ import annotations

import logging

logger = logging.getLogger("slipway.notify")


class ConsoleNotifier:
    """Writes notifications as log lines; the default when no chat robot is configured."""

    def send(self, title: str, text: str) -> None:
        logger.info("%s: %s", title, text)
