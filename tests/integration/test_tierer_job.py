"""`tickstrata tierer` as the operator's CronJobs run it: a job against a real QuestDB that plans, says and exits."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tickstrata.common.questdb_schema import TABLES, TIER_CATALOG_SPEC, TRADES_TABLE
from tickstrata.localstack.questdb import QuestDBServer

pytestmark = pytest.mark.integration

DAY = dt.timedelta(days=1)


def _trades(questdb: QuestDBServer, exchange: str, stamps: list[dt.datetime]) -> None:
    for spec in TABLES:
        questdb.exec_sql(spec.create_sql())
    values = ", ".join(
        f"('{stamp.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}', '{exchange}', 'BTC-USDT', '{n}', 1.5, 2.0, 'buy', 0, false)"
        for n, stamp in enumerate(stamps)
    )
    questdb.exec_sql(
        f"INSERT INTO {TRADES_TABLE} (ts, exchange, symbol, trade_id, price, size, side, ts_recv_ns, backfilled) "
        f"VALUES {values}"
    )
    deadline = time.monotonic() + 30
    while _count(questdb, exchange) < len(stamps):  # WAL apply is asynchronous
        assert time.monotonic() < deadline, "QuestDB never applied the inserted rows"
        time.sleep(0.1)


def _count(questdb: QuestDBServer, exchange: str) -> int:
    payload = questdb.exec_sql(f"SELECT count() FROM {TRADES_TABLE} WHERE exchange = '{exchange}'")
    return int(payload["dataset"][0][0])


def _tierer(questdb: QuestDBServer, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TIERER_")},
        "TIERER_QUESTDB_HTTP_URL": questdb.http_url,
        "TIERER_LOG_JSON": "false",
        **{f"TIERER_{key.upper()}": value for key, value in settings.items()},
    }
    return subprocess.run(
        [sys.executable, "-m", "tickstrata", "tierer"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def exchange() -> str:
    """An exchange name no other test writes, so the shared QuestDB's other rows stay out of the plan."""
    return f"tiertest-{uuid.uuid4().hex[:8]}"


def test_nothing_due_exits_zero(questdb_server: QuestDBServer, exchange: str) -> None:
    now = dt.datetime.now(dt.UTC)
    _trades(questdb_server, exchange, [now - 2 * DAY, now - DAY])
    done = _tierer(questdb_server, stage="hot-to-warm", exchange=exchange, hot_days="7", warm_days="365")
    assert done.returncode == 0, done.stderr
    assert "job done" in done.stderr
    assert _count(questdb_server, exchange) == 2


def test_a_warm_tier_that_cannot_be_reached_fails_loudly_and_keeps_the_data(
    questdb_server: QuestDBServer, exchange: str, tmp_path: Path
) -> None:
    now = dt.datetime.now(dt.UTC)
    old = now - 30 * DAY
    _trades(questdb_server, exchange, [old, now - DAY])
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the engine directory should be")
    done = _tierer(
        questdb_server, stage="hot-to-warm", exchange=exchange, hot_days="7", warm_days="365",
        clickhouse_dsn=f"chdb://{blocked}",
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "job failed" in done.stderr
    assert _count(questdb_server, exchange) == 2  # nothing dropped


def test_a_row_stamped_years_ahead_does_not_age_the_rest(questdb_server: QuestDBServer, exchange: str) -> None:
    """Aged from the newest row alone (ten years ahead), yesterday would be due with a 2-day hot window; it is not,
    because the reference is min(wall clock, newest row)."""
    now = dt.datetime.now(dt.UTC)
    _trades(questdb_server, exchange, [now - 1 * DAY, now + 3650 * DAY])
    done = _tierer(questdb_server, stage="hot-to-warm", exchange=exchange, hot_days="2", warm_days="30")
    assert done.returncode == 0, done.stderr


def test_an_unknown_tierer_variable_is_refused_before_any_work(questdb_server: QuestDBServer) -> None:
    done = _tierer(questdb_server, stage="hot-to-warm", hot_dayz="3")
    assert done.returncode == 2
    assert "TIERER_HOT_DAYZ: not a setting of this service; did you mean TIERER_HOT_DAYS?" in done.stderr


def test_stages_not_built_yet_finish_with_nothing_due_and_fail_naming_what_is_due(
    questdb_server: QuestDBServer, exchange: str
) -> None:
    now = dt.datetime.now(dt.UTC)
    _trades(questdb_server, exchange, [now - DAY])
    nothing = _tierer(questdb_server, stage="warm-to-cold", exchange=exchange, hot_days="7", warm_days="365")
    assert nothing.returncode == 0, nothing.stderr
    old_day = (now - 400 * DAY).date()
    questdb_server.exec_sql(TIER_CATALOG_SPEC.create_sql())
    questdb_server.exec_sql(
        f"INSERT INTO {TIER_CATALOG_SPEC.name} VALUES ('{old_day.isoformat()}T00:00:00.000000Z', 'trades', "
        f"'{exchange}', 'BTC-USDT', 'warm', 1, 'digest', 1.0, 1, 1, false, 0)"
    )
    deadline = time.monotonic() + 30
    catalogued = f"SELECT count() FROM {TIER_CATALOG_SPEC.name} WHERE exchange = '{exchange}'"
    while int(questdb_server.exec_sql(catalogued)["dataset"][0][0]) < 1:  # applied asynchronously (WAL)
        assert time.monotonic() < deadline, "QuestDB never applied the catalog row"
        time.sleep(0.1)
    done = _tierer(questdb_server, stage="warm-to-cold", exchange=exchange, hot_days="7", warm_days="365")
    assert done.returncode == 1, done.stderr
    assert f"stage warm-to-cold: 1 month(s) of {exchange} in the warm tier are due ({old_day:%Y-%m})" in done.stderr
    kept = _tierer(questdb_server, stage="expire-cold", cold_days="0")
    assert kept.returncode == 0, kept.stderr
    expire = _tierer(questdb_server, stage="expire-cold", exchange=exchange, cold_days="400", warm_days="365")
    assert expire.returncode == 0, expire.stderr  # nothing was ever moved to cold
