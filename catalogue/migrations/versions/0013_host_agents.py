"""Hosts registered by their agents (address, labels, capacity, last seen, lost) and the
placement a baseline recorded

Revision ID: 0013_host_agents
Revises: 0012
Create Date: 2026-12-05 11:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0013_host_agents'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString()
    with op.batch_alter_table('host_state') as batch:
        batch.add_column(sa.Column('address', text, nullable=False, server_default=''))
        batch.add_column(sa.Column('engine', text, nullable=False, server_default=''))
        batch.add_column(sa.Column('labels', sa.JSON(), nullable=False, server_default='{}'))
        batch.add_column(sa.Column('capacity', sa.Integer(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('load_balancer', sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
        batch.add_column(sa.Column('agent', text, nullable=False, server_default=''))
        batch.add_column(sa.Column('last_seen', sqlmodel.sql.sqltypes.UTCDateTime(),
                                   nullable=True))
        batch.add_column(sa.Column('lost', sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
    with op.batch_alter_table('baseline') as batch:
        batch.add_column(sa.Column('placement', sa.JSON(), nullable=False, server_default='{}'))


def downgrade() -> None:
    with op.batch_alter_table('baseline') as batch:
        batch.drop_column('placement')
    with op.batch_alter_table('host_state') as batch:
        for column in ('lost', 'last_seen', 'agent', 'load_balancer', 'capacity', 'labels',
                       'engine', 'address'):
            batch.drop_column(column)
