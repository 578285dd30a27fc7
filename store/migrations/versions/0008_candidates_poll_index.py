"""candidates(job_id, generation, status): the index every dashboard poll's version count uses

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 14:45:00
"""
from alembic import op


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_candidates_job_generation_status', 'candidates',
                    ['job_id', 'generation', 'status'])


def downgrade() -> None:
    op.drop_index('ix_candidates_job_generation_status', table_name='candidates')
