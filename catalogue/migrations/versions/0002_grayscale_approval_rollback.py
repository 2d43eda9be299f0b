"""grayscale approval rollback

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 03:24:38.794683
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('change', schema=None) as batch_op:
        batch_op.add_column(sa.Column(
            'cpu', sqlmodel.sql.sqltypes.AutoString(), nullable=False, server_default=''))
        batch_op.add_column(sa.Column(
            'memory', sqlmodel.sql.sqltypes.AutoString(), nullable=False, server_default=''))
        batch_op.add_column(sa.Column(
            'rollback_count', sa.Integer(), nullable=False, server_default='0'))

    with op.batch_alter_table('environment', schema=None) as batch_op:
        batch_op.add_column(sa.Column(
            'gray_steps', sa.JSON(), nullable=False, server_default='["1", "50%", "100%"]'))
        batch_op.add_column(sa.Column(
            'stable_seconds', sa.Integer(), nullable=False, server_default='60'))
        batch_op.add_column(sa.Column(
            'batch_size', sa.Integer(), nullable=False, server_default='1'))
        batch_op.add_column(sa.Column(
            'approval', sa.String(length=32), nullable=False, server_default='auto'))
        batch_op.add_column(sa.Column(
            'approval_timeout_seconds', sa.Integer(), nullable=False, server_default='86400'))

    with op.batch_alter_table('release', schema=None) as batch_op:
        batch_op.add_column(sa.Column(
            'approved_by', sqlmodel.sql.sqltypes.AutoString(), nullable=False, server_default=''))
        batch_op.add_column(sa.Column(
            'rollback_to', sa.Integer(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('release', schema=None) as batch_op:
        batch_op.drop_column('rollback_to')
        batch_op.drop_column('approved_by')

    with op.batch_alter_table('environment', schema=None) as batch_op:
        batch_op.drop_column('approval_timeout_seconds')
        batch_op.drop_column('approval')
        batch_op.drop_column('batch_size')
        batch_op.drop_column('stable_seconds')
        batch_op.drop_column('gray_steps')

    with op.batch_alter_table('change', schema=None) as batch_op:
        batch_op.drop_column('rollback_count')
        batch_op.drop_column('memory')
        batch_op.drop_column('cpu')

