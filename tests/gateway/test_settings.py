"""The gateway's settings and the database they point at."""

from __future__ import annotations

from pathlib import Path

import pytest

import models
import settings as settings_module
from errors import ConfigError


def test_defaults_put_the_database_in_the_data_folder(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)

    config = settings_module.load({})

    assert config.data_dir == tmp_path / "data"
    assert config.database_url == f"sqlite:///{tmp_path}/data/errand.db"
    assert config.api_key is None
    assert config.max_event_bytes == 1024 * 1024


def test_each_setting_is_read_from_its_variable(tmp_path):
    config = settings_module.load(
        {
            "ERRAND_DATA_DIR": str(tmp_path / "elsewhere"),
            "ERRAND_DATABASE_URL": "sqlite:///:memory:",
            "ERRAND_API_KEY": "k",
            "ERRAND_MAX_EVENT_BYTES": "2048",
        }
    )

    assert config.data_dir == tmp_path / "elsewhere"
    assert config.database_url == "sqlite:///:memory:"
    assert config.api_key == "k"
    assert config.max_event_bytes == 2048


@pytest.mark.parametrize("value", ["1023", str(64 * 1024 * 1024 + 1), "-1"])
def test_an_out_of_range_setting_is_refused_with_its_range(value):
    with pytest.raises(ConfigError) as error:
        settings_module.load({"ERRAND_MAX_EVENT_BYTES": value})

    assert "ERRAND_MAX_EVENT_BYTES" in error.value.message
    assert "accepted: 1024..67108864" in error.value.message


@pytest.mark.parametrize("value", ["1 MiB", "1.5", "lots"])
def test_a_setting_that_does_not_parse_is_refused_with_its_range(value):
    with pytest.raises(ConfigError) as error:
        settings_module.load({"ERRAND_MAX_EVENT_BYTES": value})

    assert "accepted: 1024..67108864" in error.value.message


def test_the_sqlite_database_runs_in_wal_mode_with_a_busy_timeout(app, settings):
    journal_mode = models.db.execute_sql("PRAGMA journal_mode").fetchone()[0]
    busy_timeout = models.db.execute_sql("PRAGMA busy_timeout").fetchone()[0]

    assert journal_mode == "wal"
    assert busy_timeout > 0
    assert Path(settings.data_dir / "errand.db").is_file()


def test_a_lease_too_short_for_any_attempt_is_refused_at_start_up():
    with pytest.raises(ConfigError, match="5.0..86400.0"):
        settings_module.load({"ERRAND_VISIBILITY_TIMEOUT": "4"})


def test_a_database_url_is_logged_without_its_password():
    url = "postgresql://errand:hunter22@db.internal:5432/errand"

    assert settings_module.redacted_url(url) == (
        "postgresql://errand:***@db.internal:5432/errand"
    )
