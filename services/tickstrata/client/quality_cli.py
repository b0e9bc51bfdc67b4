"""`tickstrata quality`: completeness per feed, open gaps and recent violations, from the validator's QualityService.

    $ tickstrata quality --from -6h
    $ tickstrata quality --exchange binance --symbols BTC-USDT,ETH-USDT --from 2026-11-24T00:00Z --to 2026-11-25T00:00Z
    $ tickstrata quality --from -24h --html quality.html      # plus a self-contained report with the heatmap

Exit status: 0 when every classified bucket is accounted for, 3 when some are missing (scripts can alert on it),
1 when the validator cannot be reached or fails, 2 for a malformed request.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final, TextIO

import grpc

from tickstrata.client.quality_report import (
    FeedSummary,
    GapRow,
    HourCell,
    QualityReport,
    ViolationRow,
    render_html,
    render_text,
)
from tickstrata.client.timeargs import TimeArgumentError, join_relative_times, to_ns
from tickstrata.common.completeness import BucketCounts
from tickstrata.marketdata.v1 import market_data_pb2 as md
from tickstrata.quality.v1 import quality_service_pb2 as pb
from tickstrata.quality.v1 import quality_service_pb2_grpc as pb_grpc

DEFAULT_ADDRESS: Final = "127.0.0.1:50053"
DEFAULT_TIMEOUT_SECS: Final = 30.0
EXIT_MISSING: Final = 3
OPEN_STATES: Final = (pb.GAP_STATE_OPEN, pb.GAP_STATE_BACKFILLING)
MAX_PAGES: Final = 100


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tickstrata quality",
        description="Completeness of every 1-minute bucket per feed, open gaps and recent violations.",
    )
    parser.add_argument("--exchange", "-e", dest="exchanges", action="append", default=[], metavar="EXCHANGE")
    parser.add_argument("--symbols", default="", help="comma-separated symbols (default: every tracked symbol)")
    parser.add_argument("--from", dest="start", default="-24h", help="start: ISO-8601 with zone, a date, or -6h")
    parser.add_argument("--to", dest="end", default="now", help="end (exclusive), same forms; default now")
    parser.add_argument("--html", type=Path, metavar="FILE", help="also write a self-contained HTML report")
    parser.add_argument("--address", default=DEFAULT_ADDRESS, help=f"validator gRPC address ({DEFAULT_ADDRESS})")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_SECS, help="seconds per call")
    return parser


def _counts(message: pb.BucketCounts) -> BucketCounts:
    return BucketCounts(message.present, message.backfilled, message.exchange_empty, message.missing, message.pending)


def fetch_report(
    stub: pb_grpc.QualityServiceStub,
    *,
    exchanges: Sequence[str],
    symbols: Sequence[str],
    start_ns: int,
    end_ns: int,
    timeout_secs: float,
) -> QualityReport:
    feeds_reply = stub.GetFeedCompleteness(
        pb.GetFeedCompletenessRequest(exchanges=exchanges, start_ns=start_ns, end_ns=end_ns), timeout=timeout_secs
    )
    feeds = [FeedSummary(f.exchange, _counts(f.counts)) for f in feeds_reply.feeds]
    cells: list[HourCell] = []
    gaps: list[GapRow] = []
    violations: list[ViolationRow] = []
    for exchange in [f.exchange for f in feeds_reply.feeds]:
        token = ""
        for _ in range(MAX_PAGES):
            rows = stub.ListBuckets(
                pb.ListBucketsRequest(
                    exchange=exchange, symbols=symbols, start_ns=start_ns, end_ns=end_ns, page_token=token
                ),
                timeout=timeout_secs,
            )
            cells += [HourCell(r.exchange, r.symbol, r.hour_start_ns, _counts(r.counts)) for r in rows.rows]
            token = rows.next_page_token
            if not token:
                break
        for symbol in symbols or [""]:
            listed = stub.ListGaps(
                pb.ListGapsRequest(
                    exchange=exchange,
                    symbol=symbol,
                    start_ns=start_ns,
                    end_ns=end_ns,
                    states=OPEN_STATES,
                    page_size=1000,
                ),
                timeout=timeout_secs,
            )
            gaps += [
                GapRow(
                    g.gap_id,
                    g.exchange,
                    g.symbol or None,
                    md.DataType.Name(g.data_type).removeprefix("DATA_TYPE_").lower(),
                    pb.GapKind.Name(g.kind).removeprefix("GAP_KIND_").lower(),
                    g.start_ns,
                    g.end_ns,
                    pb.GapState.Name(g.state).removeprefix("GAP_STATE_").lower(),
                    g.cause,
                )
                for g in listed.gaps
            ]
            found = stub.ListViolations(
                pb.ListViolationsRequest(
                    exchange=exchange, symbol=symbol, start_ns=start_ns, end_ns=end_ns, page_size=1000
                ),
                timeout=timeout_secs,
            )
            violations += [
                ViolationRow(
                    v.exchange,
                    v.symbol,
                    pb.ViolationKind.Name(v.kind).removeprefix("VIOLATION_KIND_").lower(),
                    v.start_ns,
                    v.end_ns,
                    v.detail,
                )
                for v in found.violations
            ]
    return QualityReport(
        generated_ns=time.time_ns(),
        window_start_ns=feeds_reply.start_ns or start_ns,
        window_end_ns=feeds_reply.end_ns or end_ns,
        feeds=feeds,
        cells=cells,
        open_gaps=gaps,
        violations=violations,
    )


def main(argv: Sequence[str] | None = None, *, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    args = build_parser().parse_args(join_relative_times(sys.argv[1:] if argv is None else argv))
    now_ns = time.time_ns()
    try:
        start_ns, end_ns = to_ns(args.start, now_ns=now_ns), to_ns(args.end, now_ns=now_ns)
    except TimeArgumentError as error:
        print(f"tickstrata quality: {error}", file=err)
        return 2
    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()]
    with grpc.insecure_channel(args.address) as channel:
        try:
            report = fetch_report(
                pb_grpc.QualityServiceStub(channel),
                exchanges=args.exchanges,
                symbols=symbols,
                start_ns=start_ns,
                end_ns=end_ns,
                timeout_secs=args.timeout,
            )
        except grpc.RpcError as error:
            code = getattr(error, "code", lambda: None)()
            shown = str(error)
            detail = getattr(error, "details", lambda: shown)()
            print(f"tickstrata quality: {detail} ({getattr(code, 'name', 'error')})", file=err)
            return 2 if code == grpc.StatusCode.INVALID_ARGUMENT else 1
    print(render_text(report), file=out)
    if args.html is not None:
        args.html.write_text(render_html(report), encoding="utf-8")
        print(f"HTML report written to {args.html}", file=err)
    return EXIT_MISSING if report.total.missing else 0
