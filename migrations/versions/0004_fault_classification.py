"""who is at fault: class and reason on reports, messages and suppressions; relay breaker

Every refusal and report is classified (services.fault): the class and reason are kept on
the bounce report (with the format it was read from), on the message (its last refusal)
and on the suppression entry it created. Our relay's account/transport refusals in a row
are counted in transport_breaker (a customer's own SMTP keeps counting on
customer.auth_failures). Existing rows keep empty columns: `flask reclassify-suppressions`
re-reads the evidence of old entries.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 21:06:21

"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'transport_breaker',
        sa.Column('key', sa.String(length=64), nullable=False),
        sa.Column('failures', sa.Integer(), nullable=False),
        sa.Column('last_code', sa.Integer(), nullable=True),
        sa.Column('last_text', sa.Text(), nullable=True),
        sa.Column('last_reason', sa.String(length=32), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('tripped_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('key', name=op.f('pk_transport_breaker')),
    )
    with op.batch_alter_table('bounce_report', schema=None) as batch_op:
        batch_op.add_column(sa.Column('fault_class', sa.String(length=24), nullable=True))
        batch_op.add_column(sa.Column('fault_reason', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('source', sa.String(length=12), nullable=True))
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.add_column(sa.Column('fault_class', sa.String(length=24), nullable=True))
        batch_op.add_column(sa.Column('fault_reason', sa.String(length=32), nullable=True))
    with op.batch_alter_table('suppression', schema=None) as batch_op:
        batch_op.add_column(sa.Column('fault_class', sa.String(length=24), nullable=True))
        batch_op.add_column(sa.Column('fault_reason', sa.String(length=32), nullable=True))


def downgrade():
    with op.batch_alter_table('suppression', schema=None) as batch_op:
        batch_op.drop_column('fault_reason')
        batch_op.drop_column('fault_class')
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.drop_column('fault_reason')
        batch_op.drop_column('fault_class')
    with op.batch_alter_table('bounce_report', schema=None) as batch_op:
        batch_op.drop_column('source')
        batch_op.drop_column('fault_reason')
        batch_op.drop_column('fault_class')
    op.drop_table('transport_breaker')
