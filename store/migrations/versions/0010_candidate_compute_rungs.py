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
    with op.batch_alter_table('candidates', schema=None) as batch_op:
        batch_op.add_column(sa.Column('compute', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('rungs', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('candidates', schema=None) as batch_op:
        batch_op.drop_column('rungs')
        batch_op.drop_column('compute')
