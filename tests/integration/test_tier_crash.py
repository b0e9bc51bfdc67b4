"""`kill -9` the tierer at seeded random moments of hot → warm moves, then let a run finish: every row is in exactly
one place (warm, byte for byte what the hot tier held), the catalog matches, and the hot days are gone.

Each kill aims at a step by its log line (start-up, the plan, a day moved, a partition dropped), then strikes a
random moment later, so kills land while a day is read out of QuestDB, inserted into the embedded ClickHouse
engine, verified, catalogued or dropped. `make test` kills 5 times over 3 days; `make reliability`
(TICKSTRATA_RELIABILITY=full) 20 times over 12 days of 60,000 trades per symbol. TICKSTRATA_RELIABILITY_SEED
replays a run's choices (the moments still depend on the machine's speed).
"""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.integration.servers.chdb_fixtures import open_chdb
from tests.integration.tier_harness import catalog_rows, hot_count, hot_rows, wait_for, warm_digest
from tickstrata.common.questdb_schema import INSTRUMENTS_SPEC, TABLES, TABLES_BY_NAME, TIER_CATALOG_SPEC
from tickstrata.localstack.questdb import QuestDBServer
from tickstrata.tierer.digest import canonical, digest
from tickstrata.tierer.export import day_bounds_ns
from tickstrata.tierer.warm_store import WarmStore

pytestmark = pytest.mark.integration

FULL = os.environ.get("TICKSTRATA_RELIABILITY", "") == "full"
SYMBOLS = ("BTC-USDT", "ETH-USDT")
MARKERS = ("job started", "hot to warm planned", "moved trades", "hot partition dropped", "moved candles")


def _seed(questdb: QuestDBServer, exchange: str, days: list[dt.date], trades_per_day: int) -> None:
    """Trades and candles generated inside QuestDB (`long_sequence`), on the instruments' grids (tick 0.1, lot
    0.001): prices are integers divided by 10, so each is the double nearest its decimal."""
    for spec in (*TABLES, INSTRUMENTS_SPEC, TIER_CATALOG_SPEC):
        questdb.exec_sql(spec.create_sql())
    for day in days:
        start_ns = day_bounds_ns(day)[0]
        for number, symbol in enumerate(SYMBOLS):
            questdb.exec_sql(
                f"INSERT INTO instruments VALUES ({start_ns}::timestamp_ns, '{exchange}', '{symbol}', 1, 3, '0.1', "
                "'0.001', 0)"
            )
            step_ns = 86_400 * 10**9 // trades_per_day
            questdb.exec_sql(
                "INSERT INTO trades SELECT "
                f"({start_ns} + x * {step_ns} + {number})::timestamp_ns, '{exchange}', '{symbol}', "
                f"cast(x AS STRING), (640000 + x % 977) / 10.0, (x % 13 + 1) / 1000.0, "
                "CASE WHEN x % 2 = 0 THEN 'buy' ELSE 'sell' END, x, x % 11 = 0 "
                f"FROM long_sequence({trades_per_day})"
            )
            questdb.exec_sql(
                "INSERT INTO candles SELECT "
                f"({start_ns} + (x - 1) * 60000000000)::timestamp_ns, '{exchange}', '{symbol}', 60, "
                "(640000 + x % 50) / 10.0, (640100 + x % 50) / 10.0, (639900 + x % 50) / 10.0, "
                "(640010 + x % 50) / 10.0, (x % 97) / 1000.0, (x % 97) * 64.0, x % 97, true, 'ws', x, x "
                "FROM long_sequence(1440)"
            )
    # One trade today: ages are counted from the newest row, so without it the seeded days would be "recent".
    today_ns = day_bounds_ns(dt.date.today())[0]
    questdb.exec_sql(
        f"INSERT INTO trades VALUES ({today_ns}::timestamp_ns, '{exchange}', 'BTC-USDT', '0', 64000.1, 0.001, 'buy', "
        "0, false)"
    )
    expected = len(days) * len(SYMBOLS) * trades_per_day + 1
    wait_for(lambda: hot_count(questdb, "trades", exchange, None) == expected, "seeded trades applied", 120)
    wait_for(lambda: hot_count(questdb, "candles", exchange, None) == len(days) * len(SYMBOLS) * 1440, "candles", 120)


def _start_tierer(questdb: QuestDBServer, exchange: str, warm_dsn: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TIERER_")},
        "TIERER_QUESTDB_HTTP_URL": questdb.http_url,
        "TIERER_LOG_JSON": "false",
        "TIERER_STAGE": "hot-to-warm",
        "TIERER_EXCHANGE": exchange,
        "TIERER_HOT_DAYS": "7",
        "TIERER_WARM_DAYS": "3650",
        "TIERER_CLICKHOUSE_DSN": warm_dsn,
    }
    with log.open("wb") as stderr:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "tickstrata", "tierer"], env=env, stdout=subprocess.DEVNULL, stderr=stderr
        )


def test_kill_9_at_any_step_then_a_full_run_leaves_exactly_one_copy(
    questdb_server: QuestDBServer, tmp_path: Path
) -> None:
    _run_crash_test(questdb_server, tmp_path, kills=5, days=3, trades_per_day=20_000)


@pytest.mark.reliability
@pytest.mark.timeout(3600)
@pytest.mark.skipif(not FULL, reason="full size (20 kills over 12 days) runs with `make reliability`")
def test_kill_9_twenty_times_over_twelve_days(questdb_server: QuestDBServer, tmp_path: Path) -> None:
    # Enough days that the 20th kill still finds work to interrupt.
    _run_crash_test(questdb_server, tmp_path, kills=20, days=12, trades_per_day=60_000)


def _run_crash_test(
    questdb_server: QuestDBServer, tmp_path: Path, *, kills: int, days: int, trades_per_day: int
) -> None:
    seed = int(os.environ.get("TICKSTRATA_RELIABILITY_SEED", random.randrange(2**31)))
    print(f"TICKSTRATA_RELIABILITY_SEED={seed}")
    rng = random.Random(seed)
    exchange = f"tiercrash-{uuid.uuid4().hex[:8]}"
    first_day = dt.date.today() - dt.timedelta(days=1000 + rng.randrange(3000))
    day_list = [first_day + dt.timedelta(days=n) for n in range(days)]
    _seed(questdb_server, exchange, day_list, trades_per_day)
    expected = {
        (table, day): canonical(TABLES_BY_NAME[table], hot_rows(questdb_server, table, exchange, day))
        for table in ("trades", "candles")
        for day in day_list
    }
    warm_dsn = f"chdb://{tmp_path / 'warm'}"

    finished_early = 0
    for kill in range(kills):
        log = tmp_path / f"run-{kill}.log"
        process = _start_tierer(questdb_server, exchange, warm_dsn, log)
        # Aim at a step by its log line, then a little later: start-up alone takes seconds on a loaded machine, so
        # a fixed delay would kill most runs before they touch anything.
        marker = rng.choice(MARKERS)
        while process.poll() is None and marker not in log.read_text():
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.5))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        else:
            finished_early += 1
        process.wait(timeout=60)
        lines = log.read_text().splitlines()
        print(f"kill {kill}: exit {process.returncode}, last words: {lines[-1][:160] if lines else '(none)'}")
    final = _start_tierer(questdb_server, exchange, warm_dsn, tmp_path / "final.log")
    final.wait(timeout=600)
    assert final.returncode == 0, (tmp_path / "final.log").read_text()
    print(f"{kills} kills, {finished_early} runs finished before their kill")

    client = open_chdb(Path(warm_dsn.removeprefix("chdb://")))
    try:
        store = WarmStore(client)
        catalog = catalog_rows(questdb_server, exchange)
        for (table, day), rows in expected.items():
            assert warm_digest(store, table, exchange, day) == (rows.num_rows, digest(rows)), (table, day)
            for symbol in SYMBOLS:
                catalogued = catalog[(table, day, symbol)]
                assert catalogued[0] == rows.num_rows // len(SYMBOLS), (table, day, symbol)
        warm_total = client.command(f"SELECT count() FROM {store.database}.trades WHERE exchange = '{exchange}'")
        assert warm_total == days * len(SYMBOLS) * trades_per_day  # nothing twice, nothing outside the days
    finally:
        client.close()
    wait_for(
        lambda: all(
            hot_count(questdb_server, t, exchange, day) == 0 for t in ("trades", "candles") for day in day_list
        ),
        "hot days dropped",
    )
    assert hot_count(questdb_server, "trades", exchange, None) == 1  # today's trade stays hot
