"""releases say whether they roll back the baseline they started from (also with an image)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 06:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN (not batch mode): SQLite can add a column with a constant default in
    # place, while a batch copy would drop "release", which baselines reference.
    op.add_column('release', sa.Column('rollback', sa.Boolean(), nullable=False,
                                       server_default=sa.false()))
    # Releases recorded before this revision: a rollback was one with a target baseline.
    op.execute('UPDATE "release" SET rollback = (rollback_to IS NOT NULL)')


def downgrade() -> None:
    with op.batch_alter_table('release', schema=None) as batch_op:
        batch_op.drop_column('rollback')
