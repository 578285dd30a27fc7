"""profiling_tasks.variant: the export variant a task measures (core.precision.Variant tag,
'' for the plain float32 graphs); one task per (candidate, device class, variant)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 11:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

OLD = ("candidate_id", "device_class")
NEW_NAME = "uq_profiling_tasks_candidate_device_variant"
# 0001 created the old constraint unnamed: PostgreSQL named it itself; SQLite's batch mode
# reflects it without a name, so a naming convention gives it one to drop it by.
SQLITE_CONVENTION = {"uq": "uq_%(table_name)s_%(column_0_name)s_%(column_1_name)s"}


def _old_name() -> str:
    if op.get_bind().dialect.name == "sqlite":
        return "uq_profiling_tasks_candidate_id_device_class"
    inspector = sa.inspect(op.get_bind())
    for constraint in inspector.get_unique_constraints("profiling_tasks"):
        if tuple(constraint["column_names"]) == OLD:
            return constraint["name"]
    raise RuntimeError("profiling_tasks has no unique (candidate_id, device_class)")


def upgrade() -> None:
    old = _old_name()
    with op.batch_alter_table('profiling_tasks', schema=None,
                              naming_convention=SQLITE_CONVENTION) as batch_op:
        batch_op.add_column(sa.Column('variant', sa.String(length=64), nullable=False,
                                      server_default=''))
        batch_op.drop_constraint(old, type_='unique')
        batch_op.create_unique_constraint(NEW_NAME, ['candidate_id', 'device_class', 'variant'])


def downgrade() -> None:
    with op.batch_alter_table('profiling_tasks', schema=None) as batch_op:
        batch_op.drop_constraint(NEW_NAME, type_='unique')
        batch_op.create_unique_constraint('uq_profiling_tasks_candidate_id_device_class',
                                          list(OLD))
        batch_op.drop_column('variant')
