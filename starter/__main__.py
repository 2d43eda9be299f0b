"""``python -m starter``: the ``slipway`` client (starter/client)."""

from __future__ import annotations

from starter.client.main import main

if __name__ == "__main__":
    main()
