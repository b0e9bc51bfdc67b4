"""Candle rules: one candle's OHLCV invariants, and two versions of the same candle that disagree.

Windows are the candle's own, half-open: ``[open_time_ns, open_time_ns + interval_secs * 10**9)``. Values are
compared as numbers (``64011.0`` equals ``64011.00``) and shown exactly as the venue wrote them.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final

from tickstrata.common.events import Candle
from tickstrata.validator.rules import Violation, ViolationKind

# The fields that carry a candle's values. Not compared: ``closed`` and the timestamps (they describe the update,
# not the bucket), and ``source`` (a REST candle equal to the built one agrees with it).
VALUE_FIELDS: Final = ("open", "high", "low", "close", "volume", "quote_volume", "trade_count")
_CHANGE_KINDS: Final = frozenset({ViolationKind.CANDLE_REVISION, ViolationKind.CANDLE_MISMATCH})


def candle_window(candle: Candle) -> tuple[int, int]:
    """Return the candle's half-open window ``[open_time_ns, close_time_ns)``."""
    return candle.open_time_ns, candle.close_time_ns


def check_candle(candle: Candle) -> list[Violation]:
    """Return one ``ohlcv_invariant`` violation per invariant the candle breaks (none for a sound candle).

    One violation per invariant, rather than one per candle, so each can be counted and read on its own; they
    share the candle's window. The invariants:

    - ``high >= max(open, close)``, ``low <= min(open, close)``, ``high >= low``;
    - ``volume >= 0``, and ``quote_volume >= 0`` and ``trade_count >= 0`` where the venue reports them;
    - trades and volume agree: ``trade_count == 0`` exactly when ``volume == 0`` (where trade counts are
      reported);
    - a candle without trades (``trade_count == 0``, or ``volume == 0`` where trade counts are not reported) is
      flat: ``open == high == low == close``.

    Equal values pass every invariant (a flat candle, ``high == close``).
    """
    o, h, l, c = candle.open, candle.high, candle.low, candle.close  # noqa: E741 - the OHLC letters
    details: list[str] = []
    if above := [f"{name}={value}" for name, value in (("open", o), ("close", c)) if value > h]:
        details.append(f"high={h} < " + " and ".join(above))
    if below := [f"{name}={value}" for name, value in (("open", o), ("close", c)) if value < l]:
        details.append(f"low={l} > " + " and ".join(below))
    if h < l:
        details.append(f"high={h} < low={l}")
    if candle.volume < 0:
        details.append(f"volume={candle.volume} < 0")
    if candle.quote_volume is not None and candle.quote_volume < 0:
        details.append(f"quote_volume={candle.quote_volume} < 0")
    trade_count = candle.trade_count
    if trade_count is not None and trade_count < 0:
        # Candle's constructor refuses this, but the rule must hold for any candle it is handed.
        details.append(f"trade_count={trade_count} < 0")
    elif trade_count is not None and (trade_count == 0) != (candle.volume == 0):
        details.append(f"trade_count={trade_count} but volume={candle.volume}")
    zero_trade = trade_count == 0 if trade_count is not None else candle.volume == 0
    if zero_trade and not o == h == l == c:
        details.append(f"candle without trades is not flat: open={o} high={h} low={l} close={c}")
    start_ns, end_ns = candle_window(candle)
    return [
        Violation(candle.exchange, candle.symbol, ViolationKind.OHLCV_INVARIANT, start_ns, end_ns, detail)
        for detail in details
    ]


def candle_revision(
    old: Candle,
    new: Candle,
    *,
    kind: ViolationKind = ViolationKind.CANDLE_REVISION,
) -> Violation | None:
    """Return a violation naming every value that differs between two versions of one candle, else ``None``.

    One function serves both kinds, because they differ only in what the difference means:

    - ``candle_revision`` (the default): the candle was seen again with other values, and the store's
      last-write-wins upsert would overwrite the old ones. A value that appears or disappears
      (``quote_volume absent → 791234.5``) is a change.
    - ``candle_mismatch`` (``candle_mismatch()``): a candle we built from trades disagrees with the venue's
      final candle. A value only one side reports (Kraken candles have no quote volume) cannot disagree and is
      skipped.

    The detail reads ``"close 64011.0 → 64011.5; volume 12.3 → 12.4 (built → rest)"``, old value first; the
    window is the candle's. Raises ``ValueError`` if the candles are not the same (exchange, symbol, interval,
    open time), or for another kind: that is a caller's bug, not bad data.
    """
    if kind not in _CHANGE_KINDS:
        raise ValueError(f"kind must be candle_revision or candle_mismatch, got {kind}")
    old_key = (old.exchange, old.symbol, old.interval_secs, old.open_time_ns)
    new_key = (new.exchange, new.symbol, new.interval_secs, new.open_time_ns)
    if old_key != new_key:
        raise ValueError(f"not the same candle: {old_key} vs {new_key}")
    changes = []
    for name in VALUE_FIELDS:
        old_value: Decimal | int | None = getattr(old, name)
        new_value: Decimal | int | None = getattr(new, name)
        if old_value is None or new_value is None:
            if old_value is new_value or kind is ViolationKind.CANDLE_MISMATCH:
                continue
        elif old_value == new_value:
            continue
        changes.append(f"{name} {_shown(old_value)} → {_shown(new_value)}")
    if not changes:
        return None
    start_ns, end_ns = candle_window(new)
    detail = "; ".join(changes) + f" ({old.source} → {new.source})"
    return Violation(new.exchange, new.symbol, kind, start_ns, end_ns, detail)


def candle_mismatch(built: Candle, final: Candle) -> Violation | None:
    """Return a ``candle_mismatch`` violation if a candle built from trades disagrees with the venue's final one.

    ``candle_revision(built, final, kind=ViolationKind.CANDLE_MISMATCH)``, named for readable call sites.
    """
    return candle_revision(built, final, kind=ViolationKind.CANDLE_MISMATCH)


def same_values(first: Candle, second: Candle) -> bool:
    """Return whether two candles carry equal values in every field of ``VALUE_FIELDS`` (absent equals absent)."""
    return all(getattr(first, name) == getattr(second, name) for name in VALUE_FIELDS)


def _shown(value: Decimal | int | None) -> str:
    return "absent" if value is None else str(value)
