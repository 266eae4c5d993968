"""hardening (issue 14): idempotency request hash, job-run heartbeat, login throttle by address

- idempotency_key.request_hash: an Idempotency-Key replays its answer only for the very same
  request; another body under the same key is refused.
- job_run.heartbeat_at and ix_job_run_status: a running job beats while it runs, so a run whose
  worker died or lost the database can be found and marked abandoned instead of "running" for
  ever.
- login_attempt.throttled and ix_login_attempt_ip_at: the login throttle counts failures per
  client address too, and an attempt refused by the throttle is kept but not counted.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 21:00:00

"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('idempotency_key', schema=None) as batch_op:
        batch_op.add_column(sa.Column('request_hash', sa.String(length=64), nullable=True))

    with op.batch_alter_table('job_run', schema=None) as batch_op:
        batch_op.add_column(sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_job_run_status', ['status'], unique=False)

    with op.batch_alter_table('login_attempt', schema=None) as batch_op:
        batch_op.add_column(sa.Column('throttled', sa.Boolean(), server_default=sa.false(),
                                      nullable=False))
        batch_op.create_index('ix_login_attempt_ip_at', ['ip', 'at'], unique=False)


def downgrade():
    with op.batch_alter_table('login_attempt', schema=None) as batch_op:
        batch_op.drop_index('ix_login_attempt_ip_at')
        batch_op.drop_column('throttled')

    with op.batch_alter_table('job_run', schema=None) as batch_op:
        batch_op.drop_index('ix_job_run_status')
        batch_op.drop_column('heartbeat_at')

    with op.batch_alter_table('idempotency_key', schema=None) as batch_op:
        batch_op.drop_column('request_hash')
