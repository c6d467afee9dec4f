"""Django's ORM: the one INSERT ... ON CONFLICT statement that bulk_create sends, without its transaction.

QuerySet.bulk_create(update_conflicts=True) wraps that statement in BEGIN and COMMIT: three
round trips where one statement is atomic by itself. Django has no public way to send it alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db.models import Field, Model
from django.db.models.constants import OnConflict

CHECKED_AGAINST = "5.2.19"


def insert_or_update(model: type[Model], rows: Sequence[Model], fields: Sequence[Field], update_fields: Sequence[Field],
                     unique_fields: Sequence[Field]) -> None:
    """One INSERT of `rows` that updates `update_fields` where `unique_fields` already hold a row."""
    model._base_manager._insert(rows, fields=fields, on_conflict=OnConflict.UPDATE, update_fields=update_fields,
                                unique_fields=unique_fields)
