"""Spent approval proofs: an approval counts once, in any run

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'approval_use',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('nonce', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('user', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('workflow_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('run_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('decision', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('via', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('token', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('used_by', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('used_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_approval_use_nonce', 'approval_use', ['nonce'], unique=True)


def downgrade() -> None:
    op.drop_index('ix_approval_use_nonce', table_name='approval_use')
    op.drop_table('approval_use')
