"""candidates.compute and candidates.rungs: the compute each evaluation used (CPU- or
GPU-seconds per stage, phone seconds apart) and its multi-fidelity rungs

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 11:45:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('candidates', sa.Column('compute', sa.JSON(), nullable=True))
    op.add_column('candidates', sa.Column('rungs', sa.JSON(), nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite >= 3.35 and PostgreSQL): a batch migration would copy and
    # drop the candidates table, and with foreign keys on, dropping it cascades to every
    # profiling task of those candidates.
    op.drop_column('candidates', 'rungs')
    op.drop_column('candidates', 'compute')
