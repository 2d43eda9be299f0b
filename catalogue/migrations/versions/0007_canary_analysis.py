"""Canary analysis: a policy per environment, and every measurement of a release's steps

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 09:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Environments made before analysis existed keep health checks only (empty policy).
    op.add_column('environment', sa.Column('analysis', sa.JSON(), nullable=False,
                                           server_default='{}'))
    op.create_table(
        'analysismeasurement',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('release_id', sa.Integer(), nullable=False),
        sa.Column('step', sa.Integer(), nullable=False),
        sa.Column('metric', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('mode', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('value', sa.Float(), nullable=True),
        sa.Column('baseline', sa.Float(), nullable=True),
        sa.Column('sample', sa.Integer(), nullable=True),
        sa.Column('condition', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('verdict', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('detail', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.ForeignKeyConstraint(['release_id'], ['release.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_analysismeasurement_release_id', 'analysismeasurement',
                    ['release_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_analysismeasurement_release_id', table_name='analysismeasurement')
    op.drop_table('analysismeasurement')
    with op.batch_alter_table('environment', schema=None) as batch_op:
        batch_op.drop_column('analysis')
