"""The one Settings object of the service (API and worker read the same fields).

Every field can be set by an environment variable ``CURVSCOPE_<FIELD>`` (e.g.
``CURVSCOPE_DATA_DIR``); the database and Redis URLs also answer to the conventional
``DATABASE_URL`` and ``REDIS_URL``. Everything the service writes lives under ``data_dir``
unless a URL points elsewhere: the SQLite file, study artifacts, uploaded data sets and the
shared stage cache.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CURVSCOPE_", extra="ignore",
                                      populate_by_name=True)

    data_dir: Path = Field(default=Path("curvscope-data"),
                           description="Folder for the database file, artifacts, uploads, cache.")
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("CURVSCOPE_DATABASE_URL", "DATABASE_URL",
                                                    "database_url"),
        description="SQLAlchemy URL; default a SQLite file <data_dir>/curvscope.db (WAL mode).")
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("CURVSCOPE_REDIS_URL", "REDIS_URL", "redis_url"),
        description="Redis used as Celery broker and result backend unless those are set.")
    broker_url: str | None = Field(default=None, description="Celery broker; default redis_url.")
    result_backend: str | None = Field(default=None,
                                       description="Celery result backend; default redis_url.")
    api_token: SecretStr | None = Field(
        default=None, description="If set, every write (POST, DELETE) needs "
        "'Authorization: Bearer <token>'. Reads stay open. An empty value is refused at "
        "start-up (it would read as 'no token' to one client and as a token to another).")
    api_token_file: Path | None = Field(
        default=None, description="A file holding the token (what `curvscope up` writes to "
        "<data>/token, mode 0600); used when api_token is unset.")
    allowed_hosts: str = Field(
        default="", description="Comma-separated Host header names accepted besides localhost, "
        "127.0.0.1 and [::1] on a connection that arrived on a loopback address (DNS "
        "rebinding: a page of another site resolving its name to 127.0.0.1); '*' accepts "
        "any. Connections on other interfaces are not checked (put a proxy in front).")
    cache_dir: Path | None = Field(default=None,
                                   description="Stage cache shared by workers; default "
                                   "<data_dir>/cache.")

    sqlite_busy_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    max_upload_bytes: int = Field(default=20 * 2**20, ge=1024, le=2**34)
    max_datasets: int = Field(default=100, ge=1, le=100_000)
    max_json_array_elements: int = Field(default=5_000_000, ge=1)
    max_memory_budget_gib: float | None = Field(
        default=None, gt=0, le=1_000_000,
        description="The largest compute.memory_budget_gib a client may ask for, and the "
        "budget of a spec that names none: what the workers can hold. Default half this "
        "machine's memory.")
    max_retrained_models: int = Field(default=100_000, ge=1, le=10**9,
                                      description="The most retrained models one study may "
                                      "ask for (|alphas| × n_subsets × n_seeds).")
    max_decompressed_bytes: int = Field(
        default=512 * 2**20, ge=1024, le=2**40,
        description="The most an uploaded .npz may hold once decompressed (read from the "
        ".npy headers before anything is loaded).")
    cache_max_bytes: int | None = Field(
        default=None, ge=0, description="Bound the shared stage cache: the workers' heartbeat "
        "evicts the least recently used entries beyond this many bytes (default unbounded).")
    min_free_bytes: int = Field(
        default=256 * 2**20, ge=0, description="Below this much free space in the data "
        "folder /health is degraded and new studies and uploads are refused (507).")
    max_sweep_studies: int = Field(default=64, ge=1, le=10_000,
                                   description="The most studies one POST /sweeps may name.")
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=60)

    queue_name: str = Field(default="curvscope", min_length=1, max_length=100,
                            description="Queue of the long tasks (retraining chunks); the "
                            "short ones (start, finalize) go to '<queue_name>-short', which "
                            "workers read first.")
    outbox_grace_s: float = Field(default=5.0, ge=0, le=3600,
                                  description="The sweeper sends a start message owed for at "
                                  "least this long (the request that owes it is probably "
                                  "sending it).")
    # Redis redelivers an unacknowledged (acks-late) message after this long: it must exceed
    # the longest task, else a second worker starts the same study while the first still runs.
    visibility_timeout_s: int = Field(default=12 * 3600, ge=60)
    result_expires_s: int = Field(default=24 * 3600, ge=60)
    task_max_retries: int = Field(default=5, ge=0, le=100)
    retry_backoff_max_s: int = Field(default=300, ge=1)
    worker_device: str = Field(
        default="auto", description="auto (cuda if available, else cpu), cpu, cuda or cuda:N.")
    worker_torch_threads: int | None = Field(
        default=None, ge=1, le=1024, description="torch threads per worker; default torch's "
        "choice (all cores). Set it when several workers share one machine.")
    progress_interval_s: float = Field(default=0.5, gt=0, le=60,
                                       description="How often a worker writes progress and "
                                       "reads the cancel flag.")
    heartbeat_s: float = Field(default=30.0, gt=0, le=3600,
                               description="How often a worker writes that it is alive, from a "
                               "thread beside its tasks (a busy solo worker cannot answer a "
                               "ping).")
    lost_after_s: float = Field(default=300.0, gt=0,
                                description="A worker silent this long is lost (killed, out of "
                                "memory, its machine gone): the live workers put its running "
                                "chunks and finalize back on the queue. Keep it well above "
                                "heartbeat_s.")
    migrate_on_start: bool = True
    serve_dashboard: bool = True
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("api_token", mode="before")
    @classmethod
    def _no_empty_token(cls, value):
        if value is not None and not str(
                value.get_secret_value() if isinstance(value, SecretStr) else value).strip():
            raise ValueError("CURVSCOPE_API_TOKEN is set but empty: set it to a secret (e.g. "
                             "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
                             ", point CURVSCOPE_API_TOKEN_FILE at a file holding one, or "
                             "unset it")
        return value

    @model_validator(mode="after")
    def _token_from_file(self):
        if self.api_token is None and self.api_token_file is not None:
            try:
                text = self.api_token_file.expanduser().read_text().strip()
            except OSError as exc:
                raise ValueError(f"CURVSCOPE_API_TOKEN_FILE={self.api_token_file} cannot be "
                                 f"read ({exc.strerror})") from None
            if not text:
                raise ValueError(f"CURVSCOPE_API_TOKEN_FILE={self.api_token_file} is empty; "
                                 "write a secret into it (or delete it and let `curvscope "
                                 "up` create one)")
            self.api_token = SecretStr(text)
        return self

    @field_validator("worker_device")
    @classmethod
    def _device(cls, value: str) -> str:
        if value in ("auto", "cpu", "cuda") or (value.startswith("cuda:")
                                                and value[5:].isdigit()):
            return value
        raise ValueError("worker_device must be auto, cpu, cuda or cuda:N")

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            url = self.database_url
            if url.startswith("postgres://"):
                url = "postgresql+psycopg://" + url[len("postgres://"):]
            elif url.startswith("postgresql://"):
                url = "postgresql+psycopg://" + url[len("postgresql://"):]
            return url
        return f"sqlite:///{(self.data_dir / 'curvscope.db').resolve()}"

    @property
    def memory_budget_cap_gib(self) -> float:
        if self.max_memory_budget_gib is not None:
            return self.max_memory_budget_gib
        import psutil

        return psutil.virtual_memory().total / 2 / 2**30

    @property
    def allowed_host_names(self) -> set[str]:
        return {h.strip().lower() for h in self.allowed_hosts.split(",") if h.strip()}

    @property
    def short_queue_name(self) -> str:
        return f"{self.queue_name}-short"

    @property
    def celery_broker_url(self) -> str:
        return self.broker_url or self.redis_url

    @property
    def celery_result_backend(self) -> str:
        return self.result_backend or self.redis_url

    @property
    def studies_dir(self) -> Path:
        return (self.data_dir / "studies").resolve()

    @property
    def datasets_dir(self) -> Path:
        return (self.data_dir / "datasets").resolve()

    @property
    def stage_cache_dir(self) -> Path:
        return (self.cache_dir or self.data_dir / "cache").resolve()

    def ensure_dirs(self) -> None:
        for path in (self.data_dir, self.studies_dir, self.datasets_dir, self.stage_cache_dir):
            path.mkdir(parents=True, exist_ok=True)


@lru_cache
def get_settings() -> Settings:
    """The process's Settings, read once from the environment."""
    return Settings()
