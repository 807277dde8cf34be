"""governance: a job's PII mode, tenants' PII modes, model audit events, per-job drift statistics

Revision ID: 0007
Revises: 0004
Create Date: 2026-11-30 06:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("summary_jobs") as batch:
        batch.add_column(sa.Column("pii_mode", sa.String(length=16), nullable=True))
    op.create_table(
        "tenant_pii_policies",
        sa.Column("tenant", sa.String(length=128), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", name=op.f("pk_tenant_pii_policies")),
    )
    op.create_table(
        "model_audit_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("component", sa.String(length=32), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("model_name", sa.String(length=255), nullable=False),
        sa.Column("manifest_sha256", sa.String(length=64), nullable=True),
        sa.Column("weights_sha256", sa.String(length=64), nullable=True),
        sa.Column("previous_manifest_sha256", sa.String(length=64), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_audit_events")),
    )
    op.create_index(op.f("ix_model_audit_events_at"), "model_audit_events", ["at"])
    op.create_table(
        "job_stats",
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("model_key", sa.String(length=255), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("input_chars", sa.Integer(), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=True),
        sa.Column("unknown_token_share", sa.Float(), nullable=True),
        sa.Column("summary_chars", sa.Integer(), nullable=False),
        sa.Column("compression_ratio", sa.Float(), nullable=False),
        sa.Column("redundancy", sa.Float(), nullable=False),
        sa.Column("hit_length_limit", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_job_stats")),
    )
    op.create_index("ix_job_stats_model_key_finished_at", "job_stats", ["model_key", "finished_at"])


def downgrade() -> None:
    op.drop_index("ix_job_stats_model_key_finished_at", table_name="job_stats")
    op.drop_table("job_stats")
    op.drop_index(op.f("ix_model_audit_events_at"), table_name="model_audit_events")
    op.drop_table("model_audit_events")
    op.drop_table("tenant_pii_policies")
    with op.batch_alter_table("summary_jobs") as batch:
        batch.drop_column("pii_mode")
