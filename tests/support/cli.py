"""Run ``slipway`` commands in-process, as the CLI tests do."""

from __future__ import annotations

import shlex

from typer.testing import CliRunner, Result

from starter.cli.main import cli

runner = CliRunner()


def run(command: str) -> Result:
    """Invoke ``slipway <command>`` (shell-style words) in-process."""
    return runner.invoke(cli, shlex.split(command))


def ok(command: str) -> Result:
    """Invoke a command that must succeed; its output is the assertion message otherwise."""
    result = run(command)
    assert result.exit_code == 0, result.output
    return result
