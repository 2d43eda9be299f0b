"""The ``slipway`` client: a small program that holds only its user's token and sends each
command to Slipway's server (``SLIPWAY_URL``). It imports nothing of the platform (an import
contract in pyproject.toml keeps it so), which is also why it starts fast."""
