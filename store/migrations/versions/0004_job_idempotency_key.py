"""jobs.idempotency_key: a retried POST /jobs gets its job back, not a duplicate

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 02:20:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('idempotency_key', sa.String(length=128), nullable=True))
        batch_op.create_unique_constraint('uq_jobs_idempotency_key', ['idempotency_key'])


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_constraint('uq_jobs_idempotency_key', type_='unique')
        batch_op.drop_column('idempotency_key')
