"""registry: registered_models.last_version, so version numbers are never reused

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 18:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("registered_models", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_version", sa.Integer(), server_default="0", nullable=False))
    op.execute(
        "UPDATE registered_models SET last_version = (SELECT COALESCE(MAX(version), 0) "
        "FROM model_versions WHERE model_versions.model_id = registered_models.id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("registered_models", schema=None) as batch_op:
        batch_op.drop_column("last_version")
