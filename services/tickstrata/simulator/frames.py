"""Binance's JSON payloads, field for field, for spot and USD-M (WebSocket events and REST rows).

The two venues differ in small ways that collectors trip over, so each difference is explicit here: USD-M
aggTrade adds `nq` and drops `M`; its bookTicker adds `e`, `E`, `T`; its depthUpdate adds `T` and `pu`; spot
writes every price with 8 decimals while USD-M uses the instrument's precision.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from tickstrata.simulator.book import LevelChange
from tickstrata.simulator.instruments import Instrument, Venue, format_scaled
from tickstrata.simulator.market import MarkState
from tickstrata.simulator.tape import Kline, Trade

_encoder: Final = msgspec.json.Encoder()

Json = dict[str, Any]


def encode(payload: object) -> bytes:
    return _encoder.encode(payload)


def agg_trade(inst: Instrument, trade: Trade, event_ms: int) -> Json:
    qty = inst.format_qty(trade.qty_steps)
    frame: Json = {
        "e": "aggTrade",
        "E": event_ms,
        "s": inst.symbol,
        "a": trade.agg_id,
        "p": inst.format_price(trade.price_ticks),
        "q": qty,
    }
    if inst.venue is Venue.USDM:
        frame["nq"] = qty  # quantity without RPI orders; the simulator has none, so it equals q
    frame.update({"f": trade.first_trade_id, "l": trade.last_trade_id, "T": trade.ts_ms, "m": trade.buyer_is_maker})
    if inst.venue is Venue.SPOT:
        frame["M"] = True
    return frame


def split_fills(trade: Trade) -> list[tuple[int, int]]:
    """(trade id, qty steps) of each fill of an aggregate trade; quantities sum to the aggregate's exactly."""
    n = trade.last_trade_id - trade.first_trade_id + 1
    base, rest = divmod(trade.qty_steps, n)
    return [(trade.first_trade_id + i, base + (1 if i < rest else 0)) for i in range(n)]


def raw_trades(inst: Instrument, trade: Trade, event_ms: int) -> list[Json]:
    """`<symbol>@trade` events: one per fill of the aggregate trade."""
    price = inst.format_price(trade.price_ticks)
    frames: list[Json] = []
    for trade_id, qty in split_fills(trade):
        if inst.venue is Venue.SPOT:
            frames.append(
                {
                    "e": "trade",
                    "E": event_ms,
                    "s": inst.symbol,
                    "t": trade_id,
                    "p": price,
                    "q": inst.format_qty(qty),
                    "T": trade.ts_ms,
                    "m": trade.buyer_is_maker,
                    "M": True,
                }
            )
        else:
            frames.append(
                {
                    "e": "trade",
                    "E": event_ms,
                    "T": trade.ts_ms,
                    "s": inst.symbol,
                    "t": trade_id,
                    "p": price,
                    "q": inst.format_qty(qty),
                    "X": "MARKET",
                    "m": trade.buyer_is_maker,
                }
            )
    return frames


def kline_object(inst: Instrument, k: Kline, *, closed: bool) -> Json:
    return {
        "t": k.open_ms,
        "T": k.close_ms,
        "s": inst.symbol,
        "i": "1m",
        "f": k.first_trade_id,
        "L": k.last_trade_id,
        "o": inst.format_price(k.open_ticks),
        "c": inst.format_price(k.close_ticks),
        "h": inst.format_price(k.high_ticks),
        "l": inst.format_price(k.low_ticks),
        "v": inst.format_qty(k.volume_steps),
        "n": k.trade_count,
        "x": closed,
        "q": inst.format_quote(k.quote_volume),
        "V": inst.format_qty(k.taker_buy_volume_steps),
        "Q": inst.format_quote(k.taker_buy_quote_volume),
        "B": "0",
    }


def kline_event(inst: Instrument, k: Kline, *, closed: bool, event_ms: int) -> Json:
    return {"e": "kline", "E": event_ms, "s": inst.symbol, "k": kline_object(inst, k, closed=closed)}


def kline_row(inst: Instrument, k: Kline) -> list[Any]:
    """A REST klines row: [open time, o, h, l, c, volume, close time, quote volume, trades, taker buy base,
    taker buy quote, ignore]."""
    return [
        k.open_ms,
        inst.format_price(k.open_ticks),
        inst.format_price(k.high_ticks),
        inst.format_price(k.low_ticks),
        inst.format_price(k.close_ticks),
        inst.format_qty(k.volume_steps),
        k.close_ms,
        inst.format_quote(k.quote_volume),
        k.trade_count,
        inst.format_qty(k.taker_buy_volume_steps),
        inst.format_quote(k.taker_buy_quote_volume),
        "0",
    ]


def agg_trade_row(inst: Instrument, trade: Trade) -> Json:
    row: Json = {
        "a": trade.agg_id,
        "p": inst.format_price(trade.price_ticks),
        "q": inst.format_qty(trade.qty_steps),
        "f": trade.first_trade_id,
        "l": trade.last_trade_id,
        "T": trade.ts_ms,
        "m": trade.buyer_is_maker,
    }
    if inst.venue is Venue.SPOT:
        row["M"] = True
    return row


def book_ticker(
    inst: Instrument, update_id: int, bid: tuple[int, int], ask: tuple[int, int], *, event_ms: int, tx_ms: int
) -> Json:
    frame: Json = {}
    if inst.venue is Venue.USDM:
        frame = {"e": "bookTicker", "u": update_id, "E": event_ms, "T": tx_ms}
    else:
        frame = {"u": update_id}
    frame.update(
        {
            "s": inst.symbol,
            "b": inst.format_price(bid[0]),
            "B": inst.format_qty(bid[1]),
            "a": inst.format_price(ask[0]),
            "A": inst.format_qty(ask[1]),
        }
    )
    return frame


def depth_update(inst: Instrument, changes: list[LevelChange], *, event_ms: int, previous_u: int | None) -> Json:
    """A diff-depth event covering `changes` (contiguous update ids); each level appears once, with its final size."""
    final: dict[tuple[str, int], int] = {}
    for change in changes:
        final[(change.side, change.price_ticks)] = change.qty_steps
    bids = [[inst.format_price(p), inst.format_qty(q)] for (side, p), q in sorted(final.items()) if side == "b"]
    asks = [[inst.format_price(p), inst.format_qty(q)] for (side, p), q in sorted(final.items()) if side == "a"]
    bids.reverse()  # best (highest) bid first, as Binance lists them
    first_u, last_u = changes[0].update_id, changes[-1].update_id
    if inst.venue is Venue.USDM:
        return {
            "e": "depthUpdate",
            "E": event_ms,
            "T": changes[-1].ts_ms,
            "s": inst.symbol,
            "U": first_u,
            "u": last_u,
            "pu": previous_u if previous_u is not None else first_u - 1,
            "b": bids,
            "a": asks,
        }
    return {"e": "depthUpdate", "E": event_ms, "s": inst.symbol, "U": first_u, "u": last_u, "b": bids, "a": asks}


def mark_price_update(inst: Instrument, state: MarkState, *, event_ms: int) -> Json:
    return {
        "e": "markPriceUpdate",
        "E": event_ms,
        "s": inst.symbol,
        "p": format_scaled(state.mark_e8, 8, 8),
        "i": format_scaled(state.index_e8, 8, 8),
        "P": format_scaled(state.settle_e8, 8, 8),
        "r": format_scaled(state.funding_rate_e8, 8, 8),
        "T": state.next_funding_ms,
    }


def premium_index(inst: Instrument, state: MarkState, *, now_ms: int) -> Json:
    return {
        "symbol": inst.symbol,
        "markPrice": format_scaled(state.mark_e8, 8, 8),
        "indexPrice": format_scaled(state.index_e8, 8, 8),
        "estimatedSettlePrice": format_scaled(state.settle_e8, 8, 8),
        "lastFundingRate": format_scaled(state.funding_rate_e8, 8, 8),
        "interestRate": "0.00010000",
        "nextFundingTime": state.next_funding_ms,
        "time": now_ms,
    }


def depth_snapshot(
    inst: Instrument, snapshot: tuple[int, list[tuple[int, int]], list[tuple[int, int]]], *, now_ms: int, tx_ms: int
) -> Json:
    last_update_id, bids, asks = snapshot
    body: Json = {"lastUpdateId": last_update_id}
    if inst.venue is Venue.USDM:
        body.update({"E": now_ms, "T": tx_ms})
    body["bids"] = [[inst.format_price(p), inst.format_qty(q)] for p, q in bids]
    body["asks"] = [[inst.format_price(p), inst.format_qty(q)] for p, q in asks]
    return body
