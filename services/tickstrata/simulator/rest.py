"""Binance's public market-data REST endpoints (spot `/api/v3/*`, USD-M `/fapi/v1/*`) over the simulated markets.

Every response carries `X-MBX-USED-WEIGHT-1M`; each endpoint costs Binance's documented weight; over the limit
answers 429 with `Retry-After`, and calling again while told to back off answers 418 (banned). History (klines,
aggTrades) comes from the same tape the WebSocket streams, so both always agree.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web

from tickstrata.simulator import frames
from tickstrata.simulator.engine import VenueEngine
from tickstrata.simulator.hostile import bad_rest_response
from tickstrata.simulator.instruments import Instrument, Venue
from tickstrata.simulator.market import SymbolMarket
from tickstrata.simulator.tape import MINUTE_MS, Kline, build_kline

_HOUR_MS: Final = 3_600_000
_USDM_DEPTH_LIMITS: Final = (5, 10, 20, 50, 100, 500, 1000)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code, self.msg, self.status = code, msg, status


def _json(body: object, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=frames.encode(body), status=status, content_type="application/json", headers=headers)


class RestApi:
    def __init__(self, engine: VenueEngine, clock: Callable[[], int], wall_clock: Callable[[], int]) -> None:
        self._engine = engine
        self._clock = clock  # market time: what the answers describe
        self._wall_clock = wall_clock  # request weight is counted per real minute, even under a scaled clock
        self._spot = engine.venue is Venue.SPOT

    def routes(self) -> list[web.RouteDef]:
        prefix = "/api/v3" if self._spot else "/fapi/v1"
        endpoints: dict[str, tuple[Callable[[web.Request], int], Callable[[web.Request], object]]] = {
            "ping": (lambda _r: 1, lambda _r: {}),
            "time": (lambda _r: 1, lambda _r: {"serverTime": self._clock()}),
            "exchangeInfo": (lambda _r: 20 if self._spot else 1, self._exchange_info),
            "depth": (self._depth_weight, self._depth),
            "klines": (self._klines_weight, self._klines),
            "aggTrades": (lambda _r: 4 if self._spot else 20, self._agg_trades),
        }
        if not self._spot:
            endpoints["premiumIndex"] = (lambda r: 1 if "symbol" in r.query else 10, self._premium_index)
        return [
            web.get(f"{prefix}/{name}", self._wrap(name, weight, body)) for name, (weight, body) in endpoints.items()
        ]

    def _wrap(self, name: str, weight: Callable[[web.Request], int], body: Callable[[web.Request], object]) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            now = self._clock()
            limiter = self._engine.limiter
            try:
                cost = weight(request)
            except ApiError:
                cost = 1
            decision = limiter.check(self._wall_clock(), cost)
            headers = {"X-MBX-USED-WEIGHT-1M": str(decision.used_weight)}
            if decision.status == 418:
                headers["Retry-After"] = str(decision.retry_after_secs)
                msg = (
                    f"Way too much request weight used; IP banned until {decision.banned_until_ms}. "
                    "Please use WebSocket Streams for live updates to avoid bans."
                )
                return _json({"code": -1003, "msg": msg}, status=418, headers=headers)
            if decision.status == 429:
                headers["Retry-After"] = str(decision.retry_after_secs)
                msg = (
                    f"Too much request weight used; current limit is {limiter.limit_per_min} request weight per "
                    "1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API."
                )
                return _json({"code": -1003, "msg": msg}, status=429, headers=headers)
            fault = self._engine.take_rest_fault(name)
            if fault is not None:
                market = self._engine.markets.get(request.query.get("symbol", ""))
                update_id = market.book.update_id if market is not None else 1
                return await bad_rest_response(request, fault, headers, last_update_id=update_id)
            try:
                self._engine.tick(now)  # REST answers from the market as of now, after the streams saw it
                return _json(body(request), headers=headers)
            except ApiError as error:
                return _json({"code": error.code, "msg": error.msg}, status=error.status, headers=headers)

        return handler

    # ------------------------------------------------------------------------------------------- parameters

    def _market(self, request: web.Request) -> SymbolMarket:
        symbol = request.query.get("symbol")
        if not symbol:
            raise ApiError(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        market = self._engine.markets.get(symbol)
        if market is None:
            raise ApiError(-1121, "Invalid symbol.")
        return market

    @staticmethod
    def _int(request: web.Request, name: str) -> int | None:
        text = request.query.get(name)
        if text is None or text == "":
            return None
        try:
            return int(text)
        except ValueError:
            raise ApiError(
                -1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'."
            ) from None

    def _limit(self, request: web.Request, default: int, maximum: int) -> int:
        limit = self._int(request, "limit")
        if limit is None:
            return default
        if limit <= 0:
            raise ApiError(-1130, "Data sent for parameter 'limit' is not valid.")
        return min(limit, maximum)

    # --------------------------------------------------------------------------------------------- endpoints

    def _exchange_info(self, request: web.Request) -> object:
        wanted = request.query.get("symbol")
        instruments = list(self._engine.instruments.values())
        if wanted is not None:
            instruments = [i for i in instruments if i.symbol == wanted]
            if not instruments:
                raise ApiError(-1121, "Invalid symbol.")
        limit = self._engine.limiter.limit_per_min
        body: dict[str, Any] = {
            "timezone": "UTC",
            "serverTime": self._clock(),
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": limit},
                {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 300_000},
            ],
            "exchangeFilters": [],
            "symbols": [self._symbol_info(inst) for inst in instruments],
        }
        if not self._spot:
            body["futuresType"] = "U_MARGINED"
            body["assets"] = [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}]
        return body

    def _symbol_info(self, inst: Instrument) -> dict[str, Any]:
        filters = [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": inst.format_tick_size(),
                "maxPrice": inst.format_price(inst.start_price_ticks * 100),
                "tickSize": inst.format_tick_size(),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": inst.format_step_size(),
                "maxQty": inst.format_qty(10 ** (inst.qty_decimals + 6)),
                "stepSize": inst.format_step_size(),
            },
        ]
        if self._spot:
            return {
                "symbol": inst.symbol,
                "status": "TRADING",
                "baseAsset": inst.base,
                "baseAssetPrecision": 8,
                "quoteAsset": inst.quote,
                "quotePrecision": 8,
                "quoteAssetPrecision": 8,
                "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
                "isSpotTradingAllowed": True,
                "isMarginTradingAllowed": False,
                "filters": filters,
                "permissions": [],
                "permissionSets": [["SPOT"]],
            }
        return {
            "symbol": inst.symbol,
            "pair": inst.symbol,
            "contractType": "PERPETUAL",
            "deliveryDate": 4133404800000,
            "onboardDate": 1569398400000,
            "status": "TRADING",
            "baseAsset": inst.base,
            "quoteAsset": inst.quote,
            "marginAsset": inst.quote,
            "pricePrecision": inst.price_decimals,
            "quantityPrecision": inst.qty_decimals,
            "baseAssetPrecision": 8,
            "quotePrecision": 8,
            "underlyingType": "COIN",
            "filters": filters,
            "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET"],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
        }

    def _depth_weight(self, request: web.Request) -> int:
        limit = self._int(request, "limit")
        if self._spot:
            limit = 100 if limit is None else limit
            return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250
        limit = 500 if limit is None else limit
        return 2 if limit <= 50 else 5 if limit <= 100 else 10 if limit <= 500 else 20

    def _depth(self, request: web.Request) -> object:
        market = self._market(request)
        if self._spot:
            limit = self._limit(request, 100, 5000)  # Binance truncates larger limits to 5000
        else:
            limit = self._limit(request, 500, 1000)
            if limit not in _USDM_DEPTH_LIMITS:
                raise ApiError(-1130, "Data sent for parameter 'limit' is not valid.")
        now = self._clock()
        tx = market.processed_ms
        return frames.depth_snapshot(market.instrument, market.book.snapshot(limit), now_ms=now, tx_ms=tx)

    def _klines_weight(self, request: web.Request) -> int:
        if self._spot:
            return 2
        limit = self._int(request, "limit") or 500
        return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10

    def _klines(self, request: web.Request) -> object:
        market = self._market(request)
        interval = request.query.get("interval")
        if not interval:
            raise ApiError(-1102, "Mandatory parameter 'interval' was not sent, was empty/null, or malformed.")
        if interval != "1m":
            raise ApiError(-1120, "Invalid interval.")
        limit = self._limit(request, 500, 1000 if self._spot else 1500)
        start, end = self._int(request, "startTime"), self._int(request, "endTime")
        now = self._clock()
        last_minute = min(now, end if end is not None else now) // MINUTE_MS
        tape = market.tape
        if start is not None:
            first_minute = max(-(-start // MINUTE_MS), tape.origin_minute)
            minutes = range(first_minute, last_minute + 1)
        else:
            minutes = range(max(tape.origin_minute, last_minute - limit + 1), last_minute + 1)
        rows: list[list[Any]] = []
        for minute in minutes:
            candle = self._candle(market, minute, now)
            if candle is not None:
                rows.append(frames.kline_row(market.instrument, candle))
                if len(rows) >= limit:
                    break
        return rows

    @staticmethod
    def _candle(market: SymbolMarket, minute: int, now_ms: int) -> Kline | None:
        if (minute + 1) * MINUTE_MS <= now_ms:
            return market.tape.rest_kline(minute)
        # The minute in progress: the open candle so far, exactly what the kline stream last pushed.
        if market.candle.open_ms == minute * MINUTE_MS:
            candle = market.candle
            if candle.trades == 0 and (market.tape.empty_kline_mode == "skip" or market.tape.outage_overlaps(minute)):
                return None
            return candle.kline()
        trades = market.tape.trades_between(minute * MINUTE_MS, now_ms, 1_000_000)
        return build_kline(minute * MINUTE_MS, trades, market.tape.close_before(minute)) if trades else None

    def _agg_trades(self, request: web.Request) -> object:
        market = self._market(request)
        limit = self._limit(request, 500, 1000)
        from_id = self._int(request, "fromId")
        start, end = self._int(request, "startTime"), self._int(request, "endTime")
        now = market.processed_ms
        tape = market.tape
        if from_id is not None and (start is not None or end is not None):
            raise ApiError(-1128, "Combination of optional parameters invalid.")
        if start is not None and end is not None and end - start > _HOUR_MS:
            raise ApiError(-1127, "More than 1 hours between startTime and endTime.")
        if from_id is not None:
            minute = tape.minute_of_agg_id(from_id, now // MINUTE_MS)
            if minute is None:
                return []
            trades = [t for t in tape.trades_between(minute * MINUTE_MS, now, limit + 1000) if t.agg_id >= from_id]
        elif start is not None or end is not None:
            lo = start if start is not None else (end or now) - _HOUR_MS
            hi = min(end if end is not None else lo + _HOUR_MS, now)
            trades = tape.trades_between(lo, hi, limit if start is not None else 10**9)
            if start is None:
                trades = trades[-limit:]
        else:
            trades = []
            lookback_ms = 60_000
            while len(trades) < limit and lookback_ms <= 64 * _HOUR_MS:
                trades = tape.trades_between(now - lookback_ms, now, 10**9)
                lookback_ms *= 4
            trades = trades[-limit:]
        return [frames.agg_trade_row(market.instrument, t) for t in trades[:limit]]

    def _premium_index(self, request: web.Request) -> object:
        now = self._clock()
        if "symbol" not in request.query:
            return [frames.premium_index(m.instrument, m.mark(now), now_ms=now) for m in self._engine.markets.values()]
        market = self._market(request)
        return frames.premium_index(market.instrument, market.mark(now), now_ms=now)
