"""cost controls: result cache, usage accounting, tenant quotas and rate buckets

Revision ID: 0006
Revises: 0004
Create Date: 2026-11-30 06:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("summary_jobs") as batch:
        batch.add_column(sa.Column("cached", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column("cache_hit_of", sa.String(length=36), nullable=True))
        batch.add_column(sa.Column("similarity", sa.Double(), nullable=True))

    op.create_table(
        "result_cache",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("tenant", sa.String(length=128), nullable=False),
        sa.Column("scope", sa.String(length=128), nullable=False),
        sa.Column("model_key", sa.String(length=64), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("params_hash", sa.String(length=64), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=True),
        sa.Column("model", sa.JSON(), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_units", sa.Integer(), nullable=False),
        sa.Column("chunks", sa.Integer(), nullable=False),
        sa.Column("simhash", sa.BigInteger(), nullable=True),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_hit_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_result_cache")),
    )
    with op.batch_alter_table("result_cache") as batch:
        batch.create_index(batch.f("ix_result_cache_tenant"), ["tenant"], unique=False)
        batch.create_index(
            "ix_result_cache_scope_model_key_params_hash", ["scope", "model_key", "params_hash"], unique=False
        )

    op.create_table(
        "job_usage",
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("tenant", sa.String(length=128), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("model", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_units", sa.Integer(), nullable=False),
        sa.Column("chunks", sa.Integer(), nullable=False),
        sa.Column("engine_s", sa.Double(), nullable=False),
        sa.Column("cached", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_job_usage")),
    )
    with op.batch_alter_table("job_usage") as batch:
        batch.create_index("ix_job_usage_tenant_day", ["tenant", "day"], unique=False)

    op.create_table(
        "tenant_limits",
        sa.Column("tenant", sa.String(length=128), nullable=False),
        sa.Column("rps", sa.Double(), nullable=True),
        sa.Column("burst", sa.Integer(), nullable=True),
        sa.Column("max_running", sa.Integer(), nullable=True),
        sa.Column("max_queued", sa.Integer(), nullable=True),
        sa.Column("tokens_per_day", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", name=op.f("pk_tenant_limits")),
    )
    # UNLOGGED on PostgreSQL: a bucket update then commits without waiting for the WAL to reach
    # the disk (milliseconds on every rate-limited request); a crash only refills the buckets.
    unlogged = ["UNLOGGED"] if op.get_bind().dialect.name == "postgresql" else []
    op.create_table(
        "rate_buckets",
        sa.Column("tenant", sa.String(length=128), nullable=False),
        sa.Column("tokens", sa.Double(), nullable=False),
        sa.Column("refilled_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", name=op.f("pk_rate_buckets")),
        prefixes=unlogged,
    )


def downgrade() -> None:
    op.drop_table("rate_buckets")
    op.drop_table("tenant_limits")
    with op.batch_alter_table("job_usage") as batch:
        batch.drop_index("ix_job_usage_tenant_day")
    op.drop_table("job_usage")
    with op.batch_alter_table("result_cache") as batch:
        batch.drop_index("ix_result_cache_scope_model_key_params_hash")
        batch.drop_index(batch.f("ix_result_cache_tenant"))
    op.drop_table("result_cache")
    with op.batch_alter_table("summary_jobs") as batch:
        batch.drop_column("similarity")
        batch.drop_column("cache_hit_of")
        batch.drop_column("cached")
