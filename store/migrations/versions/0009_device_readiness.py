"""devices.readiness: the agent's preflight verdict on its device (ready, or why not and how
to fix it, and the runner build it found), sent with every heartbeat

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 08:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('readiness', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.drop_column('readiness')
