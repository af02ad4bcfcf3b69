"""tracking: index tag values by prefix (PostgreSQL refuses B-tree rows over ~2.7 kB)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 17:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Must match mlpilot.store.schema.TAG_INDEX_PREFIX; a migration keeps its own copy so it never changes later.
_PREFIX = 200


def upgrade() -> None:
    op.drop_index("ix_tags_key_value", table_name="tags")
    op.create_index("ix_tags_key_value_prefix", "tags", ["key", sa.text(f"substr(value, 1, {_PREFIX})")])


def downgrade() -> None:
    op.drop_index("ix_tags_key_value_prefix", table_name="tags")
    op.create_index("ix_tags_key_value", "tags", ["key", "value"])
