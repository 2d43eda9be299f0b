"""Notifications: console/log, generic webhook and DingTalk robot."""
