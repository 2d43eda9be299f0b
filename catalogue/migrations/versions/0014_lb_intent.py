"""Load balancers' intent in the catalogue: each environment key's frontend and backend servers,
so a replacement load-balancer host rebuilds its HAProxy daemons from the catalogue

Revision ID: 0014
Revises: 0013_host_agents
Create Date: 2026-12-05 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0014'
down_revision = '0013_host_agents'
branch_labels = None
depends_on = None


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString()
    op.create_table(
        'lb_frontend',
        sa.Column('env_key', text, nullable=False),
        sa.Column('bind_port', sa.Integer(), nullable=False),
        sa.Column('health_path', text, nullable=True),
        sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('env_key'),
    )
    op.create_table(
        'lb_server_intent',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('env_key', text, nullable=False),
        sa.Column('server', text, nullable=False),
        sa.Column('address', text, nullable=False),
        sa.Column('port', sa.Integer(), nullable=False),
        sa.Column('weight', sa.Integer(), nullable=False),
        sa.Column('state', text, nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('env_key', 'server'),
    )
    op.create_index('ix_lb_server_intent_env_key', 'lb_server_intent', ['env_key'])


def downgrade() -> None:
    op.drop_index('ix_lb_server_intent_env_key', table_name='lb_server_intent')
    op.drop_table('lb_server_intent')
    op.drop_table('lb_frontend')
