"""The app the web role serves (server_config/serve.py): whole request bodies first, then Django on an app thread."""

from a2wsgi import WSGIMiddleware

from server_config.bodies import WholeBodies
from server_config.serve import body_limits, web_threads
from server_config.wsgi import application as wsgi_application

# Django stays a WSGI app (its persistent database connections live on these long-lived threads);
# the event loop in front reads bodies, so a slow client never holds one of them (server_config/bodies.py).
application = WholeBodies(WSGIMiddleware(wsgi_application, workers=web_threads()), *body_limits())
