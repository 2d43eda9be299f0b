"""Activity that sends a notification through the configured notifier."""

from __future__ import annotations

import logging

import httpx
from temporalio import activity

from integrations.notify.notifier import Notifier, NotifyError
from schemas.models import NotifyInput

logger = logging.getLogger("slipway.notify")
# A chat robot that keeps failing must never fail a release: after this many attempts the
# notification is logged and dropped.
NOTIFY_ATTEMPTS = 3


class NotifyActivities:
    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier

    @activity.defn
    def notify(self, data: NotifyInput) -> None:
        """Tell people about a release or a lane: started, waiting, done, rolled back."""
        try:
            self.notifier.send(data.title, data.text)
        except (NotifyError, httpx.HTTPError) as error:
            if activity.info().attempt < NOTIFY_ATTEMPTS:
                raise
            logger.warning("notification %r dropped after %d attempts: %s", data.title,
                           NOTIFY_ATTEMPTS, error)
