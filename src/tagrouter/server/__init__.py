"""The OpenAI-compatible routing gateway (extra ``server``).

Build an app with :func:`tagrouter.server.app.create_app` and a
:class:`~tagrouter.server.config.GatewayConfig`; ``tagrouter serve`` runs one with uvicorn.
"""

#: The standard asyncio event loop, even where uvloop is installed: under overload uvloop left new
#: connections waiting in the listen backlog for seconds (scripts/bench_gateway.py), and it has open
#: reports of mixed-up responses under heavy load.
UVICORN_LOOP = "asyncio"

#: Python's thread switch interval in ``tagrouter serve`` (the default is 5 ms). The gateway's worker
#: threads (the feedback store's commits, learning, large bodies parsed and their tokens counted off the
#: event loop) hold the GIL while they compute; each time the event loop releases it (every socket call
#: does) it may wait a whole interval to get it back, so one request can wait several intervals behind
#: one learning update. 1 ms bounds that wait to about what answering a request costs.
SWITCH_INTERVAL_S = 0.001
