"""HTTP surface of the GWS v2 Voice API (spec voice-api.md §1-§3), mounted by ``gateway.app``.

``gateway.api.routes.build_api(telephony, settings)`` returns the routes, middleware and
exception handlers; ``gateway.api.notify.connect_notifications`` feeds the CometD server.
"""
