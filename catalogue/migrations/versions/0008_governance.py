"""Governance: freezes and deploy windows, release trains, break-glass releases

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 18:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'freezerecord',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('scope', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('starts_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('ends_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column('rrule', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('duration_seconds', sa.Integer(), nullable=False),
        sa.Column('timezone', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('incident', sa.Boolean(), nullable=False),
        sa.Column('created_by', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_freezerecord_scope', 'freezerecord', ['scope'], unique=False)
    op.create_table(
        'train',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('workflow_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('run_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('state', sa.String(length=32), nullable=False),
        sa.Column('members', sa.JSON(), nullable=False),
        sa.Column('requested_by', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('approved_by', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('rollback_of', sa.Integer(), nullable=True),
        sa.Column('error', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('started_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('finished_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('run_id'),
    )
    op.create_index('ix_train_name', 'train', ['name'], unique=False)
    # Plain ADD COLUMNs (not batch mode): a batch copy would drop "release", which baselines
    # and measurements reference. SQLite cannot add the foreign key in place; the column
    # carries one wherever the dialect can (PostgreSQL).
    op.add_column('release', sa.Column('break_glass', sqlmodel.sql.sqltypes.AutoString(),
                                       nullable=False, server_default=''))
    op.add_column('release', sa.Column('train_id', sa.Integer(), nullable=True))
    op.create_index('ix_release_train_id', 'release', ['train_id'], unique=False)
    if op.get_bind().dialect.name != 'sqlite':
        op.create_foreign_key('fk_release_train_id', 'release', 'train', ['train_id'], ['id'])


def downgrade() -> None:
    if op.get_bind().dialect.name != 'sqlite':
        op.drop_constraint('fk_release_train_id', 'release', type_='foreignkey')
    op.drop_index('ix_release_train_id', table_name='release')
    with op.batch_alter_table('release', schema=None) as batch_op:
        batch_op.drop_column('train_id')
        batch_op.drop_column('break_glass')
    op.drop_index('ix_train_name', table_name='train')
    op.drop_table('train')
    op.drop_index('ix_freezerecord_scope', table_name='freezerecord')
    op.drop_table('freezerecord')
