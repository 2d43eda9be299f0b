"""``python -m starter``: the Slipway command line."""

from __future__ import annotations

from starter.cli.main import main

if __name__ == "__main__":
    main()
