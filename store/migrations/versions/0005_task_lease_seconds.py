"""profiling_tasks.lease_seconds: heartbeats renew a lease by the length it was granted

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 02:55:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('profiling_tasks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lease_seconds', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('profiling_tasks', schema=None) as batch_op:
        batch_op.drop_column('lease_seconds')
