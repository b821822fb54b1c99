"""station runs (cache keys, leases), artifacts and lineage edges; run errors, leases, model hashes

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 06:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "station_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("station", sa.String(length=40), nullable=False),
        sa.Column("label", sa.String(length=300), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("outputs", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_station_runs_station", "station_runs", ["station"])
    op.create_index("ix_station_runs_key", "station_runs", ["key"])
    op.create_table(
        "artifacts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=500), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "name", "hash", name="uq_artifacts_kind_name_hash"),
    )
    op.create_index("ix_artifacts_hash", "artifacts", ["hash"])
    op.create_table(
        "lineage_edges",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), sa.ForeignKey("artifacts.id"), nullable=False),
        sa.Column("target_id", sa.Integer(), sa.ForeignKey("artifacts.id"), nullable=False),
        sa.Column("station_run_id", sa.Integer(), sa.ForeignKey("station_runs.id"), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source_id", "target_id", "station_run_id", name="uq_lineage_edges"),
    )
    op.create_index("ix_lineage_edges_source_id", "lineage_edges", ["source_id"])
    op.create_index("ix_lineage_edges_target_id", "lineage_edges", ["target_id"])
    op.create_index("ix_lineage_edges_station_run_id", "lineage_edges", ["station_run_id"])
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("error", sa.Text(), nullable=True))
        batch.add_column(sa.Column("model_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("model_files", sa.JSON(), nullable=False, server_default="{}"))
        batch.add_column(sa.Column("pid", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("host", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        for column in ("heartbeat_at", "host", "pid", "model_files", "model_hash", "error"):
            batch.drop_column(column)
    op.drop_table("lineage_edges")
    op.drop_table("artifacts")
    op.drop_table("station_runs")
