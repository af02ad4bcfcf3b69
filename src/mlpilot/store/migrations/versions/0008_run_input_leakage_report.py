"""tracking: the leakage report a dataset carried, stored with the run's input

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 00:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable, no default: existing inputs simply have no report; no table rewrite on either backend.
    with op.batch_alter_table("run_inputs") as batch:
        batch.add_column(sa.Column("leakage_report", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("run_inputs") as batch:
        batch.drop_column("leakage_report")
