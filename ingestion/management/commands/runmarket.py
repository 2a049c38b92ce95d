"""``manage.py runmarket``: the embedded mode in one process.

Serves HTTP and WebSocket (uvicorn, in the same event loop), runs the ingestion engine with
the simulated provider and the saver every ``PERSIST_INTERVAL_S``. ``make run`` uses it.
"""

from __future__ import annotations

import asyncio
import contextlib

from django.core.management.base import BaseCommand

from ingestion.runtime import MarketRuntime


class Command(BaseCommand):
    help = "Serve the site and stream simulated quotes in one process (the embedded default)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--provider", action="append", dest="providers", metavar="CODE", help="Providers to run (default SIM)."
        )

    def handle(self, *args, host: str, port: int, providers: list[str] | None, **options) -> None:
        asyncio.run(self._serve(host, port, [p.upper() for p in providers] if providers else ["SIM"]))

    async def _serve(self, host: str, port: int, providers: list[str]) -> None:
        import uvicorn
        from django.conf import settings
        from django.utils.module_loading import import_string

        # The project's ASGI application, by name: an app never imports the wiring above it.
        application = import_string(settings.ASGI_APPLICATION)

        runtime = MarketRuntime(provider_codes=providers, with_saver=True, with_rollup=True)
        await runtime.start()
        config = uvicorn.Config(
            application,
            host=host,
            port=port,
            lifespan="off",
            log_level="info",
            # Keep the project's LOGGING (format, token redaction): uvicorn's own would replace it.
            log_config=None,
            # uvicorn's websockets protocol made lighter, by name like the application above.
            ws="marketapp.uvicorn_ws:WebSocketProtocol",
            # uvicorn would buffer frames of up to 16 MiB before the consumer's size check ran.
            ws_max_size=int(getattr(settings, "WS_MAX_FRAME_BYTES", 65536)),
        )
        server = uvicorn.Server(config)
        self.stdout.write(f"marketapp on http://{host}:{port}/ (live: {', '.join(providers)}); Ctrl-C stops.")
        try:
            await server.serve()
        finally:
            # uvicorn re-raises the signal it caught, and asyncio.run then cancels this task:
            # the shutdown must finish anyway, or bars closed on the way out are lost.
            stopping = asyncio.ensure_future(runtime.stop())
            while not stopping.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(stopping)
