"""devices.identity: one row per physical device, so a disabled device stays disabled

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 10:00:00

Existing rows are given their identity as `store.devices.device_identity` computed it at
this revision (copied here: a migration is a fixed record, it must not change with the
code). Where one device was enrolled several times, the row that keeps the identity is its
newest disabled row if any (disabling sticks), else its newest row; the others keep NULL.
"""
import hashlib

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def _identity(name, properties):
    if properties.get("backend") == "adb" and properties.get("serial"):
        key = ["adb", properties["serial"], properties.get("board", "")]
    else:
        key = [properties.get("backend", ""), name, properties.get("model", "")]
    return hashlib.sha256("\x1f".join(key).encode()).hexdigest()


def upgrade() -> None:
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('identity', sa.String(length=64), nullable=True))
    devices = sa.table('devices', sa.column('id', sa.Integer), sa.column('name', sa.String),
                       sa.column('properties', sa.JSON), sa.column('state', sa.String),
                       sa.column('identity', sa.String))
    connection = op.get_bind()
    chosen = {}
    for row in connection.execute(sa.select(devices.c.id, devices.c.name, devices.c.properties,
                                            devices.c.state).order_by(devices.c.id)):
        key = _identity(row.name, row.properties or {})
        best = chosen.get(key)
        if best is None or row.state == "disabled" or best[1] != "disabled":
            chosen[key] = (row.id, row.state)
    for key, (device_id, _) in chosen.items():
        connection.execute(devices.update().where(devices.c.id == device_id)
                           .values(identity=key))
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_devices_identity'), ['identity'], unique=True)


def downgrade() -> None:
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_devices_identity'))
        batch_op.drop_column('identity')
