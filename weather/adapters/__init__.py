"""Each library's private API, behind one small module per library.

Where a library offers no public way to do what the project needs, the private call
lives here and nowhere else, and tests/weather/test_adapters.py pins both the
behaviour relied on and the release it was checked against: an upgrade fails there
first, naming what to re-read. (Celery's consumer internals are the workers' own:
workers/consumer.py, pinned by tests/workers/test_consumer.py.)
"""
