"""The OpenAI-compatible routing gateway (extra ``server``).

Build an app with :func:`tagrouter.server.app.create_app` and a
:class:`~tagrouter.server.config.GatewayConfig`; ``tagrouter serve`` runs one with uvicorn.
"""

#: The standard asyncio event loop, even where uvloop is installed: under overload uvloop left new
#: connections waiting in the listen backlog for seconds (scripts/bench_gateway.py), and it has open
#: reports of mixed-up responses under heavy load.
UVICORN_LOOP = "asyncio"
