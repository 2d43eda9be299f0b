"""Activity that sends a notification through the configured notifier."""

from __future__ import annotations

from temporalio import activity

from integrations.notifier import ConsoleNotifier
from schemas.models import NotifyInput


class NotifyActivities:
    def __init__(self, notifier: ConsoleNotifier) -> None:
        self.notifier = notifier

    @activity.defn
    def notify(self, data: NotifyInput) -> None:
        """Tell people about a release: started, waiting, done, rolled back."""
        self.notifier.send(data.title, data.text)
