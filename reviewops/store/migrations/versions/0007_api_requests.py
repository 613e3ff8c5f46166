"""the API's answered requests on watched routes, with their latency (the monitoring page's traffic and latency)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 11:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'api_requests',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('route', sa.String(length=64), nullable=False),
        sa.Column('status', sa.SmallInteger(), nullable=False),
        sa.Column('latency_ms', sa.Float(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_api_requests_created_at', 'api_requests', ['created_at'])


def downgrade() -> None:
    op.drop_index('ix_api_requests_created_at', table_name='api_requests')
    op.drop_table('api_requests')
