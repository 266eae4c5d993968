"""drop the two message indexes that newer composite indexes cover

ix_message_recipient (recipient) is the leading column of ix_message_recipient_created, and
exact reference lookups go through ix_message_reference_norm_created (reference_norm is the
normalised reference). Every index is one more B-tree each purged row leaves, and on SQLite
one more page written per deleted row: dropping these two makes the retention purge faster.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 00:40:00

"""
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.drop_index('ix_message_recipient')
        batch_op.drop_index('ix_message_reference')


def downgrade():
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.create_index('ix_message_reference', ['reference'], unique=False)
        batch_op.create_index('ix_message_recipient', ['recipient'], unique=False)
