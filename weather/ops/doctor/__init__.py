"""`manage.py doctor`: the original design's troubleshooting list ("Dépannage courant"), as checks.

Each check answers ok, warn or fail, says what it saw and what to do. They are
grouped by the symptom an operator starts from: tasks not executed, tasks stuck
or slow, periodic tasks not triggered; and work applied twice, from the effects ledger.
"""

from .findings import FAIL, OK, SYMPTOMS, WARN, Finding, run_checks

__all__ = ["FAIL", "OK", "SYMPTOMS", "WARN", "Finding", "run_checks"]
