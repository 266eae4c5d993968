"""a message can be a test email

The test emails sent from a customer's page and from the template editor borrow an event
(document_sent, or the event being edited): the flag lets the Log and the message page show
them as tests instead of as that event. Existing messages are not tests.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 21:33:26

"""
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.add_column(sa.Column('test', sa.Boolean(), server_default=sa.false(),
                                      nullable=False))


def downgrade():
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.drop_column('test')
