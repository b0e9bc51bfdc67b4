"""Simulator service: the Binance spot and USD-M hosts on loopback, scenario faults, replay and recording."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from typing import ClassVar

from tickstrata.common.clock import market_speed, market_time_ms
from tickstrata.common.health import CheckResult
from tickstrata.common.lifecycle import ServiceApp, ServiceContext
from tickstrata.simulator.engine import EngineConfig, VenueEngine
from tickstrata.simulator.faults import FaultRecord, FaultSpec, load_scenario
from tickstrata.simulator.host import VenueHost
from tickstrata.simulator.instruments import Venue
from tickstrata.simulator.replay import CaptureRecorder, load_capture, replay
from tickstrata.simulator.settings import SimulatorSettings
from tickstrata.simulator.ws import WsPolicy

logger = logging.getLogger(__name__)


def engine_config(settings: SimulatorSettings, venue: Venue) -> EngineConfig:
    return EngineConfig(
        seed=settings.seed,
        symbols=settings.symbol_list,
        trades_per_sec=settings.trades_per_sec,
        history_trades_per_sec=settings.history_trades_per_sec,
        history_minutes=settings.history_minutes,
        book_depth=settings.book_depth,
        book_updates_per_sec=settings.book_updates_per_sec,
        empty_kline_mode=settings.empty_kline_mode,
        weight_limit_per_min=(
            settings.spot_weight_limit_per_min if venue is Venue.SPOT else settings.usdm_weight_limit_per_min
        ),
        ban_secs=settings.ban_secs,
        kline_push_ms=settings.kline_push_ms,
    )


def ws_policy(settings: SimulatorSettings, venue: Venue) -> WsPolicy:
    spot = venue is Venue.SPOT
    return WsPolicy(
        max_streams=settings.max_streams,
        max_incoming_per_sec=settings.spot_max_incoming_per_sec if spot else settings.usdm_max_incoming_per_sec,
        ping_interval_secs=settings.spot_ping_interval_secs if spot else settings.usdm_ping_interval_secs,
        pong_timeout_secs=settings.spot_pong_timeout_secs if spot else settings.usdm_pong_timeout_secs,
        max_connection_secs=settings.max_connection_secs,
        send_server_shutdown=settings.send_server_shutdown,
    )


class SimulatorApp(ServiceApp[SimulatorSettings]):
    name: ClassVar[str] = "simulator"

    def __init__(self, settings: SimulatorSettings) -> None:
        super().__init__(settings)
        self.hosts: dict[str, VenueHost] = {}
        self._recorder: CaptureRecorder | None = None

    @property
    def ports(self) -> dict[str, int]:
        return {venue: host.port for venue, host in self.hosts.items()}

    def apply_fault(self, spec: FaultSpec, default_venue: str) -> list[FaultRecord]:
        """Apply `spec` now to the host it names, or to both (`all`); `default_venue` is the host that was asked."""
        del default_venue  # the control endpoint already filled the venue in when the request left it out
        targets = list(self.hosts.values()) if spec.venue == "all" else [self.hosts[spec.venue]]
        now = market_time_ms()
        records = [host.engine.apply_fault(spec, now) for host in targets]
        logger.info("fault applied", extra={"fault": spec.model_dump(exclude_none=True), "hosts": len(targets)})
        return records

    async def start_hosts(self) -> None:
        """Start both venue hosts (and the recorder); `start` adds scenario, replay and readiness on top."""
        settings = self.settings
        start_ms = market_time_ms()
        ssl_context = self._ssl_context()
        if settings.record_file is not None:
            self._recorder = CaptureRecorder(settings.record_file)
        ports = {Venue.SPOT: settings.spot_port, Venue.USDM: settings.usdm_port}
        for venue in (Venue.SPOT, Venue.USDM):
            engine = VenueEngine(venue, engine_config(settings, venue), start_ms=start_ms)
            engine.recorder = self._recorder
            host = VenueHost(
                engine,
                policy=ws_policy(settings, venue),
                host=settings.host,
                port=ports[venue],
                tick_ms=settings.tick_ms,
                fault_sink=self.apply_fault,
                ssl_context=ssl_context,
            )
            await host.start()
            self.hosts[venue.value] = host
        scheme = "wss" if ssl_context else "ws"
        logger.info(
            "simulator listening",
            extra={
                "ports": self.ports,
                "urls": {v: f"{scheme}://{settings.host}:{p}" for v, p in self.ports.items()},
                "symbols": len(self.hosts[Venue.SPOT.value].engine.instruments),
            },
        )
        if settings.ports_file is not None:
            settings.ports_file.write_text(json.dumps(self.ports))

    async def start(self, context: ServiceContext) -> None:
        await self.start_hosts()
        settings = self.settings
        if settings.scenario_file is not None:
            context.spawn(self._run_scenario(), name="simulator-scenario")
        if settings.replay_file is not None:
            captured = load_capture(settings.replay_file)
            engines = {venue: host.engine for venue, host in self.hosts.items()}
            for engine in engines.values():
                engine.replay_mode = True
            context.spawn(
                replay(
                    captured,
                    engines,
                    speed=settings.replay_speed,
                    wait_for_client=settings.replay_wait_for_client,
                ),
                name="simulator-replay",
            )

        async def listening() -> CheckResult:
            ok = all(host.port for host in self.hosts.values())
            return CheckResult(ok, json.dumps(self.ports))

        context.health.add_check("venues", listening)

    def _ssl_context(self) -> ssl.SSLContext | None:
        cert, key = self.settings.tls_cert_file, self.settings.tls_key_file
        if cert is None and key is None:
            return None
        if cert is None or key is None:
            raise ValueError("TLS needs both SIMULATOR_TLS_CERT_FILE and SIMULATOR_TLS_KEY_FILE")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        return context

    async def _run_scenario(self) -> None:
        assert self.settings.scenario_file is not None
        specs = sorted(load_scenario(self.settings.scenario_file), key=lambda s: s.at_secs or 0.0)
        started = asyncio.get_running_loop().time()
        speed = market_speed()  # `at_secs` is market time: under a scaled clock it passes `speed` times faster
        for spec in specs:
            delay = (spec.at_secs or 0.0) / speed - (asyncio.get_running_loop().time() - started)
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                self.apply_fault(spec, "")
            except ValueError as error:  # a bad scenario entry is reported, the rest still runs
                logger.error("scenario fault rejected", extra={"fault": spec.model_dump(), "error": str(error)})

    async def stop_intake(self) -> None:
        for host in self.hosts.values():
            await host.stop_intake()

    async def close(self) -> None:
        for host in self.hosts.values():
            await host.close()
        if self._recorder is not None:
            self._recorder.close()
