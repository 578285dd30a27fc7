"""candidates.graph_revision: the exporter's graph revision (core.manifest.GRAPH_REVISION)
a candidate's export and hardware metrics came from, so that other jobs learn only from
latencies measured on the graphs they would export (NULL: recorded before this column)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 17:50:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('candidates', sa.Column('graph_revision', sa.Integer(), nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMN, as 0010's downgrade explains (a batch copy would cascade to tasks).
    op.drop_column('candidates', 'graph_revision')
