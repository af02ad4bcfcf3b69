"""features: the feature registry (applied definition sets, versioned, and the current definitions)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 20:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feature_registry_versions",
        sa.Column("project", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("applied_at", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=256), nullable=False),
        sa.Column("specs_hash", sa.String(length=64), nullable=False),
        sa.Column("specs", sa.JSON(), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("project", "version", name=op.f("pk_feature_registry_versions")),
    )
    op.create_table(
        "feature_definitions",
        sa.Column("project", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("spec_hash", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("project", "kind", "name", name=op.f("pk_feature_definitions")),
    )


def downgrade() -> None:
    op.drop_table("feature_definitions")
    op.drop_table("feature_registry_versions")
