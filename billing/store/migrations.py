"""Run Alembic programmatically (`billing migrate`, embedded auto-migration, tests)."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory

from alembic import command

_ROOT = Path(__file__).resolve().parents[2]
# An installed wheel carries the scripts beside this module; a source checkout keeps them at its root.
_INSTALLED = Path(__file__).resolve().parent / "alembic"
SCRIPTS = _INSTALLED if _INSTALLED.is_dir() else _ROOT / "alembic"


def alembic_config(sync_url: str) -> Config:
    """An Alembic config pointing at this package's migrations and the given database."""
    ini = _ROOT / "alembic.ini"
    cfg = Config(str(ini)) if ini.exists() else Config()
    cfg.set_main_option("script_location", str(SCRIPTS))
    cfg.set_main_option("sqlalchemy.url", sync_url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    return cfg


def upgrade(sync_url: str, revision: str = "head") -> None:
    """Migrate the database at ``sync_url`` to ``revision``."""
    command.upgrade(alembic_config(sync_url), revision)


def downgrade(sync_url: str, revision: str) -> None:
    command.downgrade(alembic_config(sync_url), revision)


def head_revision() -> str | None:
    """The newest revision of this package's migrations (what `billing migrate` upgrades to)."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
