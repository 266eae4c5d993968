"""sending lanes and rate limits per transport

A customer_smtp customer gets its number of lanes (connections at once to its server) and
its provider's limits (per second, minute, hour, day, with the preset they came from); the
relay's are global settings. rate_state and rate_slot count the sends of rate-limited
transports, shared by every worker. Existing customers keep the defaults (no limit).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 00:40:00

"""
import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('customer', schema=None) as batch_op:
        batch_op.add_column(sa.Column('smtp_lanes', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('rate_limits', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('rate_preset', sa.String(length=30), nullable=True))
    op.create_table(
        'rate_state',
        sa.Column('key', sa.String(length=64), nullable=False),
        sa.Column('seq', sa.BigInteger(), nullable=False),
        sa.Column('slowdown', sa.Integer(), nullable=False),
        sa.Column('slowdown_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('slowdown_until', sa.DateTime(timezone=True), nullable=True),
        sa.Column('slowdown_reply', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('key', name=op.f('pk_rate_state')),
    )
    op.create_table(
        'rate_slot',
        sa.Column('key', sa.String(length=64), nullable=False),
        sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('key', 'seq', name=op.f('pk_rate_slot')),
    )


def downgrade():
    op.drop_table('rate_slot')
    op.drop_table('rate_state')
    with op.batch_alter_table('customer', schema=None) as batch_op:
        batch_op.drop_column('rate_preset')
        batch_op.drop_column('rate_limits')
        batch_op.drop_column('smtp_lanes')
