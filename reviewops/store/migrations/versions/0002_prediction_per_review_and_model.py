"""a collected review is scored once per model version

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 02:40:00
"""
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('uq_predictions_review_model', 'predictions', ['review_id', 'model_name', 'model_version'],
                    unique=True)


def downgrade() -> None:
    op.drop_index('uq_predictions_review_model', table_name='predictions')
