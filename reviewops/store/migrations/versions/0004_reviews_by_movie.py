"""reviews are read by movie (movie summaries)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 03:45:00
"""
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_reviews_movie', 'reviews', ['movie_id'])


def downgrade() -> None:
    op.drop_index('ix_reviews_movie', table_name='reviews')
