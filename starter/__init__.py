"""The people-facing side: the ``python -m starter`` / ``slipway`` CLI, the HTTP receiver, the
use-cases both share, and the embedded stack."""
