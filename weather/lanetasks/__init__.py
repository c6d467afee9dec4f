"""Django's Tasks API on the lanes: a backend that enqueues through Celery, and the pools that run what it sends."""
