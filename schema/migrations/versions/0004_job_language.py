"""the detected language of each job's document

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 04:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("summary_jobs") as batch:
        batch.add_column(sa.Column("language", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("summary_jobs") as batch:
        batch.drop_column("language")
