"""predictions served by the API carry the id the API handed out (for feedback)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 03:30:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('predictions') as batch:
        batch.add_column(sa.Column('public_id', sa.String(length=32), nullable=True))
    op.create_index('uq_predictions_public_id', 'predictions', ['public_id'], unique=True)


def downgrade() -> None:
    op.drop_index('uq_predictions_public_id', table_name='predictions')
    with op.batch_alter_table('predictions') as batch:
        batch.drop_column('public_id')
