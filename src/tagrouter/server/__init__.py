"""The OpenAI-compatible routing gateway (``tagrouter serve``); needs the ``server`` extra.

Build an app with :func:`tagrouter.server.app.create_app` and a
:class:`~tagrouter.server.config.GatewayConfig`.
"""
