"""Django's Tasks API, imported from one place: django-tasks on Django 5.2.

On Django 6 the same names come from `django.tasks` (the package became part of
Django): this module's imports change, nothing that imports from it does. The
project's own names are Django 6's: `InvalidTask`, `TaskResultDoesNotExist`.
"""

from django_tasks import (
    DEFAULT_TASK_QUEUE_NAME,
    TaskContext,
    TaskResult,
    TaskResultStatus,
    default_task_backend,
    task,
    task_backends,
)
from django_tasks.backends.base import BaseTaskBackend
from django_tasks.base import DEFAULT_TASK_PRIORITY, Task, TaskError
from django_tasks.exceptions import InvalidTaskError as InvalidTask
from django_tasks.exceptions import TaskResultDoesNotExist
from django_tasks.signals import task_enqueued, task_finished, task_started

__all__ = [
    "DEFAULT_TASK_PRIORITY",
    "DEFAULT_TASK_QUEUE_NAME",
    "BaseTaskBackend",
    "InvalidTask",
    "Task",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultStatus",
    "default_task_backend",
    "task",
    "task_backends",
    "task_enqueued",
    "task_finished",
    "task_started",
]
