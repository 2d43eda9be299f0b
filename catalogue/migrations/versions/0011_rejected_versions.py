"""Rejected versions: a rolled-back release's image is refused until a person allows it;
automatic releases hold after a manual rollback

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-10 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'rejected_version',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('app_id', sa.Integer(), nullable=False),
        sa.Column('key', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('image', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('digest', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('release_id', sa.Integer(), nullable=True),
        sa.Column('env', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('rejected_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['app_id'], ['application.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('app_id', 'key'),
    )
    op.create_index('ix_rejected_version_app_id', 'rejected_version', ['app_id'], unique=False)
    # Plain ADD COLUMNs (not batch mode): a batch copy would drop "release" and "environment",
    # which other tables reference. Rows from before: no digest known, not checked (never
    # rejected by a later rollback), no hold.
    op.add_column('release', sa.Column('digest', sqlmodel.sql.sqltypes.AutoString(),
                                       nullable=False, server_default=''))
    op.add_column('release', sa.Column('image_checked', sa.Boolean(), nullable=False,
                                       server_default=sa.false()))
    op.add_column('release', sa.Column('allow_rejected', sqlmodel.sql.sqltypes.AutoString(),
                                       nullable=False, server_default=''))
    op.add_column('environment', sa.Column('auto_hold', sqlmodel.sql.sqltypes.AutoString(),
                                           nullable=False, server_default=''))
    op.add_column('environment', sa.Column('auto_hold_by', sqlmodel.sql.sqltypes.AutoString(),
                                           nullable=False, server_default=''))
    op.add_column('environment', sa.Column('auto_hold_at', sqlmodel.sql.sqltypes.UTCDateTime(),
                                           nullable=True))


def downgrade() -> None:
    # ALTER TABLE … DROP COLUMN in place (SQLite 3.35+, PostgreSQL): no table copy.
    for column in ('auto_hold_at', 'auto_hold_by', 'auto_hold'):
        op.drop_column('environment', column)
    for column in ('allow_rejected', 'image_checked', 'digest'):
        op.drop_column('release', column)
    op.drop_index('ix_rejected_version_app_id', table_name='rejected_version')
    op.drop_table('rejected_version')
