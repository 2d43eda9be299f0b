"""Activity that sends a notification through the configured notifier."""

from __future__ import annotations

import logging

import httpx
from temporalio import activity

from integrations.notify.links import ApprovalLinks
from integrations.notify.notifier import Notifier, NotifyError
from schemas.models import NotifyInput

logger = logging.getLogger("slipway.notify")
# A chat robot that keeps failing must never fail a release: after this many attempts the
# notification is logged and dropped.
NOTIFY_ATTEMPTS = 3


class NotifyActivities:
    def __init__(self, notifier: Notifier, links: ApprovalLinks | None = None) -> None:
        self.notifier = notifier
        # Only for notifiers that deliver to people (a console notifier writes logs).
        self.links = links

    @activity.defn
    def notify(self, data: NotifyInput) -> None:
        """Tell people about a release or a lane: started, waiting, done, rolled back; an
        approval request carries approve/reject links when links are configured."""
        text = data.text
        if data.links is not None and self.links is not None:
            text += self.links.markdown(data.links)
        try:
            self.notifier.send(data.title, text)
        except (NotifyError, httpx.HTTPError) as error:
            if activity.info().attempt < NOTIFY_ATTEMPTS:
                raise
            logger.warning("notification %r dropped after %d attempts: %s", data.title,
                           NOTIFY_ATTEMPTS, error)
