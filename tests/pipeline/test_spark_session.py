"""The session builder leaves the process environment as it found it."""

from __future__ import annotations

import os
import time

import pytest

from wikichurn.core.environment import scoped_environ
from wikichurn.core.settings import S3Settings, Settings
from wikichurn.pipeline.spark import build_spark

AWS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_ENDPOINT",
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_SKIP_SIGNATURE",
)


def test_scoped_environ_restores_values_and_absence_even_on_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WIKICHURN_TEST_KEPT", "before")
    monkeypatch.delenv("WIKICHURN_TEST_NEW", raising=False)
    before = dict(os.environ)
    with pytest.raises(RuntimeError), scoped_environ({"WIKICHURN_TEST_KEPT": "during", "WIKICHURN_TEST_NEW": "x"}):
        assert os.environ["WIKICHURN_TEST_KEPT"] == "during" and os.environ["WIKICHURN_TEST_NEW"] == "x"
        raise RuntimeError("the block fails")
    assert dict(os.environ) == before


def test_scoped_environ_applies_and_restores_the_time_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        with scoped_environ({"TZ": "UTC"}):
            assert time.timezone == 0
        assert os.environ["TZ"] == "Asia/Tokyo" and time.timezone == -9 * 3600
    finally:
        monkeypatch.undo()
        time.tzset()


def _settings(**s3: str) -> Settings:
    return Settings(engine="sail", s3=S3Settings(endpoint_url="http://127.0.0.1:9", **s3))


def test_sail_session_environment_lasts_as_long_as_the_session(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in AWS:
        monkeypatch.delenv(name, raising=False)
    before = dict(os.environ)
    with build_spark(_settings(access_key_id="first-key", secret_access_key="first-secret")) as spark:
        assert spark.range(3).count() == 3
        assert os.environ["AWS_ACCESS_KEY_ID"] == "first-key"
        assert os.environ["TZ"] == "UTC"
    assert dict(os.environ) == before

    # Another session, without keys (anonymous): nothing of the first one is left to inherit.
    with build_spark(_settings(anonymous="true")) as spark:
        assert spark.range(1).count() == 1
        assert "AWS_ACCESS_KEY_ID" not in os.environ and "AWS_SECRET_ACCESS_KEY" not in os.environ
        assert os.environ["AWS_SKIP_SIGNATURE"] == "true"
    assert dict(os.environ) == before


def test_sail_idle_session_timeout_comes_from_the_settings() -> None:
    # Sail removes a session idle for 900 s by default, which killed the test session's Spark
    # after a long training test; the setting reaches the server (a short one expires the session)
    # and the default outlives any idle spell of a job or a test run.
    assert Settings().sail.session_timeout_s >= 24 * 3600
    before = os.environ.get("SAIL_SPARK__SESSION_TIMEOUT_SECS")  # the test session's own server has one
    with build_spark(Settings(sail={"session_timeout_s": 1})) as spark:
        assert spark.range(3).count() == 3
        time.sleep(3)
        with pytest.raises(Exception, match="not running"):
            spark.range(3).count()
    assert os.environ.get("SAIL_SPARK__SESSION_TIMEOUT_SECS") == before
