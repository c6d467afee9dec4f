"""`manage.py weather_simulator`: run the Open-Meteo-compatible simulator on loopback."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser

from weather.simulator import FaultConfig, SimulatorServer


class Command(BaseCommand):
    """Serve simulated forecasts until interrupted."""

    help = "Run the Open-Meteo-compatible weather simulator (loopback by default)."

    def add_arguments(self, parser: CommandParser) -> None:
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

    def handle(self, *args: object, **options: object) -> None:
        config = FaultConfig(
            latency_ms=options["latency_ms"],
            latency_per_location_ms=options["latency_per_location_ms"],
            error_rate=options["error_rate"],
            rate_limit_rate=options["rate_limit_rate"],
            timeout_rate=options["timeout_rate"],
            malformed_rate=options["malformed_rate"],
            bad_value_rate=options["bad_value_rate"],
            seed=options["seed"],
        )
        server = SimulatorServer((options["host"], options["port"]), config, verbose=options["verbose"])
        self.stdout.write(f"weather simulator serving {server.url} (stats: /__sim/stats)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
