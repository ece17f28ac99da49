"""The one place that builds a Spark session.

``engine: sail`` starts Sail (a Rust engine speaking Spark Connect) in this process and connects
to it: no JVM, Delta tables out of the box. ``engine: spark`` connects to Apache Spark, either
through Spark Connect (``spark.remote``) or as a classic driver (``spark.master``). The
transforms never know which one they run on.

The environment variables an engine needs (``TZ=UTC``; Sail's ``AWS_*`` and ``RUST_LOG``; JVM
Spark's ``SPARK_LOCAL_IP``) are set only while the session runs and restored when it stops
(:func:`wikichurn.core.environment.scoped_environ`): a second session with other S3 keys never
inherits the first one's.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from wikichurn.core.environment import scoped_environ

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from wikichurn.core.settings import S3Settings, Settings

log = logging.getLogger(__name__)


def sail_s3_environment(s3: S3Settings) -> dict[str, str]:
    """Environment variables that let Sail read and write S3 as configured."""
    env = {"AWS_REGION": s3.region, "AWS_EC2_METADATA_DISABLED": "true"}
    if s3.endpoint_url:
        env["AWS_ENDPOINT"] = s3.endpoint_url
        env["AWS_ENDPOINT_URL"] = s3.endpoint_url
        if s3.allow_http:
            env["AWS_ALLOW_HTTP"] = "true"
    if s3.access_key_id and s3.secret_access_key:
        env["AWS_ACCESS_KEY_ID"] = s3.access_key_id
        env["AWS_SECRET_ACCESS_KEY"] = s3.secret_access_key
    elif s3.anonymous:
        env["AWS_SKIP_SIGNATURE"] = "true"
    return env


def _s3a_conf(s3: S3Settings) -> dict[str, str]:
    """Hadoop S3A options for JVM Spark (used only when the lake or raw zone is on S3)."""
    conf = {"spark.hadoop.fs.s3a.path.style.access": "true"}
    if s3.endpoint_url:
        conf["spark.hadoop.fs.s3a.endpoint"] = s3.endpoint_url
        conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] = str(s3.endpoint_url.startswith("https")).lower()
    if s3.access_key_id and s3.secret_access_key:
        conf["spark.hadoop.fs.s3a.access.key"] = s3.access_key_id
        conf["spark.hadoop.fs.s3a.secret.key"] = s3.secret_access_key
    return conf


DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}


@contextmanager
def build_spark(settings: Settings) -> Iterator[SparkSession]:
    """A Spark session for ``settings``, shut down (session, then server) on exit.

    Args:
        settings: the wikichurn settings; ``engine`` picks Sail or Apache Spark.

    Yields:
        A ready ``SparkSession`` (a Spark Connect session for Sail and ``spark.remote``).
    """
    # PySpark converts naive datetimes with the *client's* local zone in both directions, while
    # SQL literals use the session zone. One zone (UTC) everywhere keeps watermarks and event
    # times exact whatever the machine's TZ is.
    with scoped_environ({"TZ": "UTC"}):
        if settings.engine == "sail":
            with _sail_session(settings) as spark:
                yield spark
        else:
            with _spark_session(settings) as spark:
                yield spark


@contextmanager
def _sail_session(settings: Settings) -> Iterator[SparkSession]:
    from pysail.spark import SparkConnectServer
    from pyspark.sql import SparkSession

    # pyspark's remote() sets SPARK_CONNECT_MODE_ENABLED for the whole process; owning it here
    # undoes it at stop, so a later classic (JVM) session in this process is not forced to Connect.
    env = {
        **sail_s3_environment(settings.s3),
        "SPARK_CONNECT_MODE_ENABLED": "1",
        "SAIL_SPARK__SESSION_TIMEOUT_SECS": str(settings.sail.session_timeout_s),
    }
    if "RUST_LOG" not in os.environ:
        env["RUST_LOG"] = "warn"  # Sail logs every session at INFO otherwise
    with scoped_environ(env):
        server = SparkConnectServer(ip="127.0.0.1", port=settings.sail.port)
        server.start(background=True)
        _host, port = server.listening_address
        log.info("sail server listening on 127.0.0.1:%s", port)
        # create(), not getOrCreate(): a second embedded server must get its own session.
        spark = SparkSession.builder.remote(f"sc://127.0.0.1:{port}").create()
        try:
            spark.conf.set("spark.sql.session.timeZone", "UTC")
            yield spark
        finally:
            # Session first: a client left behind a stopped server retries for minutes at exit.
            try:
                spark.stop()
            finally:
                server.stop()


@contextmanager
def _spark_session(settings: Settings) -> Iterator[SparkSession]:
    from pyspark.sql import SparkSession

    conf: dict[str, str] = {"spark.sql.session.timeZone": "UTC", **settings.spark.conf}
    if settings.table_format == "delta":
        conf = {**DELTA_CONF, **conf}
    if settings.is_s3(settings.lake_uri) or settings.is_s3(settings.raw_uri):
        conf = {**_s3a_conf(settings.s3), **conf}
    builder = SparkSession.builder.appName(settings.spark.app_name)
    env: dict[str, str] = {}
    if settings.spark.remote:
        builder = builder.remote(settings.spark.remote)
    else:
        if "SPARK_LOCAL_IP" not in os.environ:
            env["SPARK_LOCAL_IP"] = "127.0.0.1"  # the driver binds loopback, not every interface
        builder = builder.master(settings.spark.master or "local[2]")
        conf = {"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false", **conf}
    for key, value in conf.items():
        builder = builder.config(key, value)
    with scoped_environ(env):
        spark = builder.getOrCreate()
        try:
            if not settings.spark.remote:
                spark.sparkContext.setLogLevel("WARN")
            yield spark
        finally:
            spark.stop()
