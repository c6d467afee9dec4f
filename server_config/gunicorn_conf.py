"""gunicorn's settings for the web role, in one place for the Procfile, docker-compose and the image."""

from server_config.env import env_int, env_str
from server_config.logsetup import from_environment

# The platform's PORT (PaaS routers, compose, Kubernetes); all interfaces unless told otherwise.
bind = f"{env_str('WEB_BIND_ADDRESS', '0.0.0.0')}:{env_int('PORT', 8000, minimum=1, maximum=65535)}"
workers = env_int("WEB_CONCURRENCY", 2, minimum=1)
# Under the platforms' stop grace (30 s in compose and Kubernetes): requests in flight finish.
graceful_timeout = 20
# gunicorn's own lines in the project's format (LOG_FORMAT); the access line is the app's own
# (weather/requestlog.py), because it carries the request id a worker's lines of that click share.
accesslog = None
logconfig_dict = from_environment()
