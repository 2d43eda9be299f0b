"""``python -m starter.cli``: the command tree run in this process, holding what the stack's
machine holds (catalogue, Temporal, signing keys). The ``slipway`` client hands it the
commands that manage the stack (``up``, ``down``, ``dev``, ``demo``, ``server``); the server
runs every other command in a process of its own (starter/api/command_process.py)."""

from __future__ import annotations

from starter.cli.main import main

if __name__ == "__main__":
    main()
