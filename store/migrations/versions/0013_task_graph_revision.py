"""profiling_tasks.graph_revision: the exporter's graph revision (core.manifest.GRAPH_REVISION)
of the graphs a task was queued for, so a candidate measured before its job was resumed under
a newer exporter is recorded with the revision it was measured on (NULL: queued before this
column)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 20:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('profiling_tasks', sa.Column('graph_revision', sa.Integer(), nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMN, as 0010's downgrade explains (a batch copy of profiling_tasks would
    # cascade to its measurements).
    op.drop_column('profiling_tasks', 'graph_revision')
