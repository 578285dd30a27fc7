"""enroll_attempts: enrollment attempts of the last minute per client address, counted by
every server process alike (store/enrollment_limit.py)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 05:05:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'enroll_attempts',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('client', sa.String(length=255), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_enroll_attempts_at', 'enroll_attempts', ['at'])
    op.create_index('ix_enroll_attempts_client_at', 'enroll_attempts', ['client', 'at'])


def downgrade() -> None:
    op.drop_index('ix_enroll_attempts_client_at', table_name='enroll_attempts')
    op.drop_index('ix_enroll_attempts_at', table_name='enroll_attempts')
    op.drop_table('enroll_attempts')
