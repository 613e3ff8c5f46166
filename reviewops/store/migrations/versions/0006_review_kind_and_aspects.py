"""review kind (a Megabox 기대평 is written before the film is seen) and the points a reviewer ticked (aspects)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # reviews stored before this revision are all reviews of a seen film; none had its points stored
    with op.batch_alter_table('reviews') as batch:
        batch.add_column(sa.Column('kind', sa.String(length=16), server_default='review', nullable=False))
        batch.add_column(sa.Column('aspects', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('reviews') as batch:
        batch.drop_column('aspects')
        batch.drop_column('kind')
