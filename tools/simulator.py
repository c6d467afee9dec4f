"""An Open-Meteo-compatible forecast server for development, tests and benchmarks.

It answers `GET /v1/forecast` like the real API (one location: an object; several:
a list; errors: `{"error": true, "reason": ...}`), with deterministic values from
coordinates and time, optional latency and injected faults. Control endpoints under
`/__sim/` read and reset its counters and change its faults at run time.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from weather.provider import MAX_LOCATIONS_PER_REQUEST as MAX_LOCATIONS

FORECAST_PATH = "/v1/forecast"
FAULT_KINDS = ("ok", "error", "rate_limit", "timeout", "malformed", "bad_value", "cut")
UNITS = {"temperature_2m": "°C", "relative_humidity_2m": "%", "surface_pressure": "hPa"}


@dataclass
class FaultConfig:
    """Latency and fault rates; each rate is a probability per forecast request."""

    latency_ms: float = 0.0
    # Added per location asked for: a request for hundreds of places costs more than one.
    latency_per_location_ms: float = 0.0
    error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    timeout_rate: float = 0.0
    malformed_rate: float = 0.0
    bad_value_rate: float = 0.0
    timeout_sleep_s: float = 30.0
    retry_after_s: float = 1.0
    # Epoch seconds the simulator reports as "now" (0: the real clock), so a test
    # can refresh twice within one observation slot.
    fixed_time: float = 0.0
    seed: int = 0

    def update(self, values: dict) -> None:
        """Apply a partial update, rejecting unknown keys and negative values."""
        known = {f.name: f.type for f in fields(self)}
        for key, value in values.items():
            if key not in known:
                raise ValueError(f"unknown setting {key!r}; known: {sorted(known)}")
            number = float(value)
            if number < 0:
                raise ValueError(f"{key} cannot be negative")
            setattr(self, key, int(number) if key == "seed" else number)


@dataclass
class SimulatorState:
    """Counters, configuration and the script of forced faults, behind one lock."""

    config: FaultConfig = field(default_factory=FaultConfig)
    requests: int = 0
    locations: int = 0
    served: Counter = field(default_factory=Counter)
    script: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    rng: random.Random = field(default_factory=random.Random)

    def next_fault(self, location_count: int) -> str:
        """Count one forecast request and decide how to answer it."""
        with self.lock:
            self.requests += 1
            self.locations += location_count
            if self.script:
                kind = self.script.pop(0)
            else:
                kind = "ok"
                draw = self.rng.random()
                threshold = 0.0
                cfg = self.config
                for name, rate in (("error", cfg.error_rate), ("rate_limit", cfg.rate_limit_rate),
                                   ("timeout", cfg.timeout_rate), ("malformed", cfg.malformed_rate),
                                   ("bad_value", cfg.bad_value_rate)):
                    threshold += rate
                    if draw < threshold:
                        kind = name
                        break
            self.served[kind] += 1
            return kind

    def snapshot(self) -> dict:
        """Counters and configuration as JSON-ready data."""
        with self.lock:
            return {
                "requests": self.requests,
                "locations": self.locations,
                "served": dict(self.served),
                "script": list(self.script),
                "config": asdict(self.config),
            }

    def reset(self) -> None:
        """Zero the counters, clear the script and restore the default configuration."""
        with self.lock:
            self.requests = 0
            self.locations = 0
            self.served.clear()
            self.script.clear()
            self.config = FaultConfig(seed=self.config.seed)
            self.rng.seed(self.config.seed)


def observation_time(now: float) -> datetime:
    """The provider reports current conditions on a 15-minute grid."""
    slot = int(now // 900) * 900
    return datetime.fromtimestamp(slot, tz=UTC)


def current_values(latitude: float, longitude: float, when: datetime) -> dict:
    """Plausible, deterministic conditions from place and time."""
    hours = when.timestamp() / 3600
    local_hour = (when.hour + when.minute / 60 + longitude / 15) % 24
    diurnal = math.sin((local_hour - 9) / 24 * 2 * math.pi)
    seasonal = math.cos((when.timetuple().tm_yday - 196) / 365 * 2 * math.pi) * (1 if latitude >= 0 else -1)
    wobble = math.sin(latitude * 12.9898 + longitude * 78.233 + hours * 0.37)
    temperature = 27 - 0.45 * abs(latitude) + 9 * seasonal * abs(latitude) / 90 + 5 * diurnal + 2 * wobble
    humidity = min(100.0, max(5.0, 65 - 20 * diurnal + 15 * wobble))
    pressure = 1013.25 - 8 * wobble - 0.5 * abs(math.sin(longitude))
    return {
        "temperature_2m": round(temperature, 1),
        "relative_humidity_2m": round(humidity),
        "surface_pressure": round(pressure, 1),
    }


def _parse_coordinates(query: dict[str, list[str]]) -> tuple[list[float], list[float]]:
    def numbers(name: str, bound: float) -> list[float]:
        raw = query.get(name, [""])[0]
        if not raw:
            raise ValueError(f"Parameter '{name}' is required.")
        try:
            values = [float(part) for part in raw.split(",")]
        except ValueError:
            raise ValueError(f"Cannot initialize Float from invalid String value {raw[:40]} for key {name}") from None
        for value in values:
            if not math.isfinite(value) or abs(value) > bound:
                label = name.capitalize()
                raise ValueError(f"{label} must be in range of -{bound:g} to {bound:g}°. Given: {value}.")
        return values

    latitudes = numbers("latitude", 90)
    longitudes = numbers("longitude", 180)
    if len(latitudes) != len(longitudes):
        raise ValueError("Parameter 'latitude' and 'longitude' must have the same number of elements")
    if len(latitudes) > MAX_LOCATIONS:
        raise ValueError(f"Only up to {MAX_LOCATIONS} locations can be requested at once")
    return latitudes, longitudes


class SimulatorHandler(BaseHTTPRequestHandler):
    """Serves forecasts and the control endpoints."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: with Nagle's algorithm the body waited for the
    # client's delayed ACK, 40 ms on a kept-alive connection (seen as a 45 ms "0 ms" provider).
    disable_nagle_algorithm = True
    server: SimulatorServer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        if self.server.verbose:
            super().log_message(format, *args)

    def _send(self, status: int, body: bytes, content_type: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: object, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), headers=headers)

    def _error(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        self._json(status, {"error": True, "reason": reason}, headers)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/__sim/stats":
            self._json(200, self.server.state.snapshot())
        elif url.path == FORECAST_PATH:
            self._forecast(parse_qs(url.query))
        else:
            self._error(404, f"Not found: {url.path}")

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._error(400, "body is not JSON")
            return
        state = self.server.state
        try:
            if url.path == "/__sim/reset":
                state.reset()
            elif url.path == "/__sim/config":
                with state.lock:
                    state.config.update(body)
                    state.rng.seed(state.config.seed)
            elif url.path == "/__sim/script":
                faults = list(body.get("faults", []))
                unknown = [kind for kind in faults if kind not in FAULT_KINDS]
                if unknown:
                    raise ValueError(f"unknown faults {unknown}; known: {FAULT_KINDS}")
                with state.lock:
                    state.script = faults
            else:
                self._error(404, f"Not found: {url.path}")
                return
        except (TypeError, ValueError) as error:
            self._error(400, str(error))
            return
        self._json(200, state.snapshot())

    def _forecast(self, query: dict[str, list[str]]) -> None:
        state = self.server.state
        try:
            latitudes, longitudes = _parse_coordinates(query)
        except ValueError as error:
            state.next_fault(0)
            self._error(400, str(error))
            return
        kind = state.next_fault(len(latitudes))
        config = state.config
        latency_ms = config.latency_ms + config.latency_per_location_ms * len(latitudes)
        if latency_ms:
            time.sleep(latency_ms / 1000)
        if kind == "timeout":
            time.sleep(config.timeout_sleep_s)
        if kind == "error":
            self._error(500, "Internal server error (injected)")
            return
        if kind == "rate_limit":
            self._error(429, "Minutely API request limit exceeded. Please try again in one minute.",
                        {"Retry-After": f"{config.retry_after_s:g}"})
            return
        if kind == "malformed":
            self._send(200, b'{"latitude": 52.5, "current": {"temperature_2m": ', "application/json")
            return
        if kind == "cut":
            # The headers promise more than arrives: the connection drops mid-body (a proxy or a link failing).
            body = b'{"latitude": 52.5, "current": {"temperature_2m": 1.5}}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(2 * len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True
            return
        wanted = [name for name in query.get("current", [""])[0].split(",") if name in UNITS]
        when = observation_time(config.fixed_time or time.time())
        items = []
        for index, (latitude, longitude) in enumerate(zip(latitudes, longitudes, strict=True)):
            values = current_values(latitude, longitude, when)
            if kind == "bad_value" and index == 0:
                values["relative_humidity_2m"] = 180
            item = {
                "latitude": latitude,
                "longitude": longitude,
                "generationtime_ms": 0.05,
                "utc_offset_seconds": 0,
                "timezone": "GMT",
                "timezone_abbreviation": "GMT",
                "elevation": 38.0,
                "current_units": {"time": "iso8601", "interval": "seconds", **{k: UNITS[k] for k in wanted}},
                "current": {"time": when.strftime("%Y-%m-%dT%H:%M"), "interval": 900,
                            **{k: values[k] for k in wanted}},
            }
            if len(latitudes) > 1:
                item["location_id"] = index
            items.append(item)
        self._json(200, items if len(items) > 1 else items[0])


class SimulatorServer(ThreadingHTTPServer):
    """The HTTP server carrying the simulator's shared state."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], config: FaultConfig | None = None, verbose: bool = False) -> None:
        super().__init__(address, SimulatorHandler)
        self.state = SimulatorState(config=config or FaultConfig())
        self.state.rng.seed(self.state.config.seed)
        self.verbose = verbose

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hung up (killed worker, timeout) is normal here; anything else is printed."""
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        """The forecast endpoint's URL."""
        host, port = self.server_address[:2]
        return f"http://{host}:{port}{FORECAST_PATH}"


def start_in_thread(host: str = "127.0.0.1", port: int = 0, config: FaultConfig | None = None) -> SimulatorServer:
    """Start a simulator on a background thread; call `shutdown()` to stop it."""
    server = SimulatorServer((host, port), config)
    threading.Thread(target=server.serve_forever, name="weather-simulator", daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> int:
    """`python -m tools.simulator`: serve simulated forecasts until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.simulator",
        description="Run the Open-Meteo-compatible weather simulator (loopback by default).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every request")
    parser.add_argument("--latency-per-location-ms", type=float, default=0.0,
                        help="added for each location a request asks for")
    parser.add_argument("--error-rate", type=float, default=0.0, help="share of 500 answers")
    parser.add_argument("--rate-limit-rate", type=float, default=0.0, help="share of 429 answers")
    parser.add_argument("--timeout-rate", type=float, default=0.0, help="share of requests that hang")
    parser.add_argument("--malformed-rate", type=float, default=0.0, help="share of truncated bodies")
    parser.add_argument("--bad-value-rate", type=float, default=0.0,
                        help="share of answers with one physically impossible value")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", action="store_true", help="log every request")
    options = parser.parse_args(argv)
    config = FaultConfig(
        latency_ms=options.latency_ms,
        latency_per_location_ms=options.latency_per_location_ms,
        error_rate=options.error_rate,
        rate_limit_rate=options.rate_limit_rate,
        timeout_rate=options.timeout_rate,
        malformed_rate=options.malformed_rate,
        bad_value_rate=options.bad_value_rate,
        seed=options.seed,
    )
    server = SimulatorServer((options.host, options.port), config, verbose=options.verbose)
    print(f"weather simulator serving {server.url} (stats: /__sim/stats)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
