"""A price-level order book that follows the trade tape, with Binance's update ids.

Every level change takes the next update id, so a diff-depth event covering ids U..u carries the final quantity
of each level changed in that range, and a snapshot taken at any moment is the book at exactly one update id.
Trades happen at the touch: before a buy at price p the book is re-centred so the best ask is p (and the best bid
below it), before a sell so the best bid is p; the traded quantity then leaves the touch level. The book can never
cross because every re-centring removes the levels on the wrong side first.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass
from typing import Final, Literal

Side = Literal["b", "a"]

_MIN_TOUCH_EXTRA: Final = 1


@dataclass(frozen=True, slots=True)
class LevelChange:
    update_id: int
    ts_ms: int
    side: Side
    price_ticks: int
    qty_steps: int  # absolute quantity after the change; 0 removes the level


class _SideBook:
    """Levels of one side: a sorted price list plus quantities (bids read from the end, asks from the start)."""

    def __init__(self) -> None:
        self.prices: list[int] = []
        self.qty: dict[int, int] = {}

    def set(self, price: int, qty: int) -> None:
        if qty <= 0:
            if price in self.qty:
                del self.qty[price]
                self.prices.pop(bisect.bisect_left(self.prices, price))
            return
        if price not in self.qty:
            bisect.insort(self.prices, price)
        self.qty[price] = qty


class OrderBook:
    def __init__(self, *, first_update_id: int, depth: int, level_gap_ticks: int, rng: random.Random) -> None:
        self.update_id = first_update_id
        self.depth = depth
        self._gap = max(1, level_gap_ticks)
        self._rng = rng
        self._bids = _SideBook()
        self._asks = _SideBook()
        self.changes: list[LevelChange] = []  # since the last drain, oldest first

    # ---------------------------------------------------------------------------------------------- reading

    @property
    def best_bid(self) -> tuple[int, int] | None:
        if not self._bids.prices:
            return None
        price = self._bids.prices[-1]
        return price, self._bids.qty[price]

    @property
    def best_ask(self) -> tuple[int, int] | None:
        if not self._asks.prices:
            return None
        price = self._asks.prices[0]
        return price, self._asks.qty[price]

    def snapshot(self, limit: int) -> tuple[int, list[tuple[int, int]], list[tuple[int, int]]]:
        """(lastUpdateId, bids best first, asks best first), at most `limit` levels a side."""
        bids = [(p, self._bids.qty[p]) for p in reversed(self._bids.prices[-limit:])]
        asks = [(p, self._asks.qty[p]) for p in self._asks.prices[:limit]]
        return self.update_id, bids, asks

    def drain_changes(self) -> list[LevelChange]:
        changes, self.changes = self.changes, []
        return changes

    # ---------------------------------------------------------------------------------------------- writing

    def _set(self, ts_ms: int, side: Side, price: int, qty: int) -> None:
        book = self._bids if side == "b" else self._asks
        if book.qty.get(price, 0) == max(qty, 0):
            return
        book.set(price, qty)
        self.update_id += 1
        self.changes.append(LevelChange(self.update_id, ts_ms, side, price, max(qty, 0)))

    def _random_qty(self, scale_steps: int) -> int:
        return max(1, round(scale_steps * self._rng.lognormvariate(0.0, 0.9)))

    def seed_levels(self, ts_ms: int, mid_ticks: int, spread_ticks: int, qty_scale_steps: int) -> None:
        """Fill an empty book around `mid_ticks` (the simulator's start)."""
        best_bid = max(1, mid_ticks - spread_ticks // 2)
        self._set(ts_ms, "b", best_bid, self._random_qty(qty_scale_steps))
        self._set(ts_ms, "a", best_bid + max(1, spread_ticks), self._random_qty(qty_scale_steps))
        self._refill(ts_ms, qty_scale_steps)

    def trade(self, ts_ms: int, price: int, *, qty: int, buyer_is_maker: bool, spread_ticks: int, scale: int) -> None:
        """Re-centre the book on a trade at `price`, then take `qty` from the touch level."""
        if buyer_is_maker:  # taker sold into the bid at `price`
            self._recentre(ts_ms, best_bid=price, best_ask=price + spread_ticks, touch="b", qty=qty, scale=scale)
        else:
            self._recentre(
                ts_ms, best_bid=max(1, price - spread_ticks), best_ask=price, touch="a", qty=qty, scale=scale
            )
        side_book = self._bids if buyer_is_maker else self._asks
        self._set(ts_ms, "b" if buyer_is_maker else "a", price, side_book.qty[price] - qty)
        self._refill(ts_ms, scale)

    def _recentre(self, ts_ms: int, *, best_bid: int, best_ask: int, touch: Side, qty: int, scale: int) -> None:
        # Remove everything that would cross or sit inside the new touch, then make sure both touches exist.
        for price in [p for p in self._asks.prices if p < best_ask]:
            self._set(ts_ms, "a", price, 0)
        for price in [p for p in self._bids.prices if p > best_bid]:
            self._set(ts_ms, "b", price, 0)
        for side, price in (("b", best_bid), ("a", best_ask)):
            book = self._bids if side == "b" else self._asks
            have = book.qty.get(price, 0)
            # The traded level must hold at least the traded quantity plus something that stays behind.
            need = qty + _MIN_TOUCH_EXTRA if side == touch else 1
            if have < need:
                self._set(ts_ms, side, price, need + self._random_qty(scale))  # type: ignore[arg-type]

    def _refill(self, ts_ms: int, scale: int) -> None:
        """Keep `depth` levels a side: trim the far end, extend it on the level grid."""
        for side in ("b", "a"):
            book = self._bids if side == "b" else self._asks
            while len(book.prices) > self.depth:
                far = book.prices[0] if side == "b" else book.prices[-1]
                self._set(ts_ms, side, far, 0)
            while 0 < len(book.prices) < self.depth:
                if side == "b":
                    far = book.prices[0]
                    price = (far - 1) // self._gap * self._gap
                    if price < 1:
                        break
                else:
                    far = book.prices[-1]
                    price = (far // self._gap + 1) * self._gap
                self._set(ts_ms, side, price, self._random_qty(scale))

    def jitter(self, ts_ms: int, scale: int) -> None:
        """A quote change away from trades: a level near the top changes size, or a deep level is pulled."""
        side: Side = "b" if self._rng.random() < 0.5 else "a"
        book = self._bids if side == "b" else self._asks
        if not book.prices:
            return
        # Closer levels change more often, as on a real book.
        index = min(len(book.prices) - 1, int(self._rng.expovariate(1 / 4)))
        price = book.prices[-1 - index] if side == "b" else book.prices[index]
        if index > 2 and self._rng.random() < 0.2:
            self._set(ts_ms, side, price, 0)
            self._refill(ts_ms, scale)
        else:
            self._set(ts_ms, side, price, self._random_qty(scale))
