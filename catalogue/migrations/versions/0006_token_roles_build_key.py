"""API tokens carry roles; a workflow records a build once (unique workflow id + label)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 07:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Tokens made before roles existed keep what they could do: read, release, approve.
    op.add_column('api_token', sa.Column('roles', sa.String(), nullable=False,
                                         server_default='read,release,approve'))
    # Overlapping retries of record_build may have written duplicates: keep the first row.
    op.execute("DELETE FROM build WHERE workflow_id != '' AND id NOT IN ("
               "SELECT MIN(id) FROM build WHERE workflow_id != '' "
               "GROUP BY workflow_id, version_label)")
    op.create_index('ux_build_workflow_label', 'build', ['workflow_id', 'version_label'],
                    unique=True, sqlite_where=sa.text("workflow_id != ''"),
                    postgresql_where=sa.text("workflow_id != ''"))


def downgrade() -> None:
    op.drop_index('ux_build_workflow_label', table_name='build')
    with op.batch_alter_table('api_token', schema=None) as batch_op:
        batch_op.drop_column('roles')
