"""crawl progress per movie (back-fill below a page cap or a failed page) and the owner of a batch (orphans)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # movies crawled before this revision are not known complete: their next crawl back-fills them once
    with op.batch_alter_table('movies') as batch:
        batch.add_column(sa.Column('reviews_complete', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column('backfill_page', sa.Integer(), nullable=True))
    with op.batch_alter_table('collection_batches') as batch:
        batch.add_column(sa.Column('owner', sa.String(length=255), nullable=True))
        batch.add_column(sa.Column('heartbeat_at', sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('collection_batches') as batch:
        batch.drop_column('heartbeat_at')
        batch.drop_column('owner')
    with op.batch_alter_table('movies') as batch:
        batch.drop_column('backfill_page')
        batch.drop_column('reviews_complete')
