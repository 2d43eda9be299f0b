"""Authorization per application: applications belong to a team; API tokens are limited to
applications and/or teams

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMNs (not batch mode): a batch copy would drop "application", which
    # environments, builds, changes and releases reference. Applications registered before
    # have no team; tokens made before have an empty scope: every application, as before.
    op.add_column('application', sa.Column('team', sqlmodel.sql.sqltypes.AutoString(),
                                           nullable=False, server_default=''))
    op.add_column('api_token', sa.Column('apps', sqlmodel.sql.sqltypes.AutoString(),
                                         nullable=False, server_default=''))
    op.add_column('api_token', sa.Column('teams', sqlmodel.sql.sqltypes.AutoString(),
                                         nullable=False, server_default=''))


def downgrade() -> None:
    # ALTER TABLE … DROP COLUMN in place (SQLite 3.35+, PostgreSQL): no table copy.
    op.drop_column('api_token', 'teams')
    op.drop_column('api_token', 'apps')
    op.drop_column('application', 'team')
