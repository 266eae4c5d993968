"""DKIM keys: per customer (its own From domain) and for our own sender domains

One row per key set: an RSA 2048 key under `selector`, optionally an Ed25519 key under
`ed25519_selector`; private halves encrypted with POSTINO_CREDENTIALS_KEY (wiped when the key
is retired); state active / prepared / previous / retired for rotation.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 20:52:51

"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('dkim_key',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=True),
    sa.Column('domain', sa.String(length=253), nullable=False),
    sa.Column('selector', sa.String(length=63), nullable=False),
    sa.Column('rsa_public', sa.Text(), nullable=False),
    sa.Column('rsa_private_encrypted', sa.Text(), nullable=True),
    sa.Column('ed25519_selector', sa.String(length=63), nullable=True),
    sa.Column('ed25519_public', sa.Text(), nullable=True),
    sa.Column('ed25519_private_encrypted', sa.Text(), nullable=True),
    sa.Column('state', sa.String(length=10), nullable=False),
    sa.Column('forced', sa.Boolean(), nullable=False),
    sa.Column('verified_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ed25519_verified_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('dns_check', sa.JSON(), nullable=True),
    sa.Column('checked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('activated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('retired_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], name=op.f('fk_dkim_key_customer_id_customer')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dkim_key')),
    sa.UniqueConstraint('domain', 'selector', name='uq_dkim_key_selector')
    )
    with op.batch_alter_table('dkim_key', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dkim_key_customer_id'), ['customer_id'], unique=False)


def downgrade():
    with op.batch_alter_table('dkim_key', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dkim_key_customer_id'))

    op.drop_table('dkim_key')
