"""The mlgate GitOps bot: webhook intake, durable queue, workers and the HTTP app.

Layout (server side; the domain side lives in :mod:`mlgate.bot.handlers`, ``events``,
``commands``, ``policy`` and ``forges``):

- :mod:`mlgate.bot.settings`  ``bot.yml`` + ``MLGATE_*`` environment variables → :class:`BotSettings`
- :mod:`mlgate.core.intake`    pure: signature/token checks, delivery ids, which events are used
- :mod:`mlgate.edge.db.store`     SQLAlchemy store: deliveries queue, effects, locks, audit, kv
- :mod:`mlgate.bot.worker`    threads that lease deliveries from the store and call the handler
- :mod:`mlgate.bot.app`       the Starlette app and its group-commit intake writer
- :mod:`mlgate.edge.metrics`   Prometheus metrics

Importing this package is cheap: no submodule is imported here.
"""
