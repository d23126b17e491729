"""The store's SCHEMA_HEAD (what lets a short CLI command skip Alembic) is Alembic's real head:
several branches add migrations, and a stale constant would make a store look current when it
is not, or run Alembic on every command."""

from __future__ import annotations

from alembic.config import Config
from alembic.script import ScriptDirectory

from tollway.store.db import MIGRATIONS, SCHEMA_HEAD


def test_schema_head_is_the_single_alembic_head() -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    heads = ScriptDirectory.from_config(cfg).get_heads()
    assert heads == [SCHEMA_HEAD]
