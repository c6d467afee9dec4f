"""django-celery-results: its database backend's row for a task state, written by a subclass in one statement.

The backend's store hook (`_store_result`) and the helpers it builds the row with (the
request's meta and extended fields) are private; the library has no public hook for "store
this row differently". Subclasses implement `store_row`.
"""

from __future__ import annotations

from typing import Any

from django_celery_results.backends.database import DatabaseBackend

CHECKED_AGAINST = "2.6.0"


class RowStoringBackend(DatabaseBackend):
    """The library's backend, handing each state's row, encoded as the library encodes it, to `store_row`."""

    def _store_result(self, task_id: str, result: Any, status: str, traceback: Any = None, request: Any = None,
                      using: Any = None) -> Any:
        content_type, content_encoding, encoded = self.encode_content(result)
        meta = {**self._get_meta_from_request(request), "children": self.current_task_children(request)}
        _, _, encoded_meta = self.encode_content(meta)
        fields = {"task_id": task_id, "status": status, "result": encoded, "traceback": traceback,
                  "meta": encoded_meta, "content_type": content_type, "content_encoding": content_encoding,
                  **self._get_extended_properties(request, traceback)}
        self.store_row(fields)
        return encoded

    def store_row(self, fields: dict[str, Any]) -> None:
        """Write the TaskResult row with these column values."""
        raise NotImplementedError
