"""Message brokers a swimlane's consumers read from: a lane's own consumer groups and the
registry that tells every consumer which lane consumes its own messages.

``layout`` holds what both sides share (key names, the message field, the ownership rule),
``redis_lanes`` is Slipway's provisioning side (RedisLaneBroker). The application side, the
library services import, is ``lanes.messages``.
"""
