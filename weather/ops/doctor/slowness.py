"""Tasks stuck or slow: queue wait against run time, runs near their soft limit, starts that never ended,
dead letters, and a provider that paused us or a quota used up."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from routing import DEAD_LETTER_QUEUE, LANE_NAMES
from routing.broker import queue_states
from weather.models import ProviderQuota, TaskAttempt
from weather.quota import Consumer, QuotaLimits, usage
from weather.sharedmetrics import histogram_quantiles, lane_histograms, shared_samples
from workers.pools import NEAR_LIMIT_SHARE, load_pools

from .findings import OK, STUCK_OR_SLOW, WARN, Context, Finding

# How far back a run near its soft limit still counts as a warning.
RECENT = timedelta(hours=1)
# A message started and not ended this long after its pool's hard limit lost its worker without a word.
STARTED_SLACK = timedelta(minutes=1)


def _finding(check: str, status: str, saw: str, todo: str = "") -> Finding:
    return Finding(STUCK_OR_SLOW, check, status, saw, todo)


def wait_against_run(context: Context) -> Iterator[Finding]:
    """Per lane, p50/p95 of queue wait against the lane's wait budget (and run time, for the reader)."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        yield _finding("queue wait", WARN, "no metrics shared between processes (PROMETHEUS_MULTIPROC_DIR unset)",
                       "set PROMETHEUS_MULTIPROC_DIR to a directory web and workers share")
        return
    histograms = lane_histograms()
    pools = load_pools()
    for lane in LANE_NAMES:
        waits = histogram_quantiles(histograms.get(lane, {}).get("wait", {}), (0.5, 0.95))
        runs = histogram_quantiles(histograms.get(lane, {}).get("run", {}), (0.5, 0.95))
        if waits[0] is None or runs[0] is None:
            yield _finding(f"lane {lane} wait", OK, "no task has run here since the metrics were reset")
            continue
        pool = next(p for p in pools.values() if lane in p.queues)
        saw = (f"wait p50 <= {waits[0]} s, p95 <= {waits[1]} s (budget {pool.wait_budget_s} s); "
               f"run p50 <= {runs[0]} s, p95 <= {runs[1]} s")
        # Against the lane's own budget (workers/pools.py), as the FBrainLaneWaitOverBudget alert: a bulk
        # batch waiting behind the warm-up burst is on time, a click waiting seconds is not.
        if waits[1] > pool.wait_budget_s:
            yield _finding(f"lane {lane} wait", WARN, saw,
                           f"tasks wait longer than the lane's budget: add slots or replicas to the {pool.name} pool "
                           f"(WORKER_{pool.name.upper()}_CONCURRENCY), or look for a backlog burst in /ops/")
        else:
            yield _finding(f"lane {lane} wait", OK, saw)


def _recent_near_limit_runs(since: float) -> dict[str, list[tuple[float, str]]]:
    """Per lane, (when, task) of the tasks whose last run close to the soft limit ended after `since` (epoch s)."""
    recent: dict[str, list[tuple[float, str]]] = {}
    for _, sample in shared_samples("f_brain_task_near_soft_limit_last_seconds"):
        if sample.value >= since:
            recent.setdefault(sample.labels["lane"], []).append((sample.value, sample.labels["task"]))
    return recent


def _near_limit_counts() -> dict[tuple[str, str], tuple[float, str]]:
    """Per (lane, task), runs close to the soft limit since the metrics were reset, and the limit last seen."""
    counts: dict[tuple[str, str], tuple[float, str]] = {}
    for _, sample in shared_samples("f_brain_task_near_soft_limit"):
        if sample.name.endswith("_total") and sample.value:
            key = (sample.labels["lane"], sample.labels["task"])
            total = counts.get(key, (0.0, ""))[0] + sample.value
            counts[key] = (total, sample.labels["soft_limit_seconds"])
    return counts


def near_soft_limit(context: Context) -> Iterator[Finding]:
    """Runs of the last hour that came close to their worker's soft limit, on every lane (workers count them)."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return  # wait_against_run says the metrics are not shared
    share = f"{NEAR_LIMIT_SHARE:.0%}+ of its worker's soft limit"
    recent = _recent_near_limit_runs(time.time() - RECENT.total_seconds())
    counts = _near_limit_counts()
    for lane in LANE_NAMES:
        if recent.get(lane):
            when, task = max(recent[lane])
            total, limit = counts.get((lane, task), (0.0, "?"))
            at = time.strftime("%H:%M:%S", time.gmtime(when))
            yield _finding(f"lane {lane} near soft limit", WARN,
                           f"{task} took {share} in the last hour (last at {at} UTC, under a {limit} s limit; "
                           f"{total:.0f} such run(s) since the metrics were reset)",
                           "find out why (provider latency, database locks) before they are cut short; "
                           f"raise WORKER_{lane.upper()}_SOFT_TIME_LIMIT only below RabbitMQ's consumer timeout")
        else:
            yield _finding(f"lane {lane} near soft limit", OK, f"no run took {share} in the last hour")


def stuck_starts(context: Context) -> Iterator[Finding]:
    """Messages started longer ago than their pool's hard limit and never ended: held, unacknowledged, by nobody."""
    pools = load_pools()
    now = timezone.now()
    stuck = []
    for attempt in TaskAttempt.objects.all().only("task_id", "task_name", "lane", "last_started_at", "starts"):
        pool = next((p for p in pools.values() if attempt.lane in p.queues), None)
        limit = timedelta(seconds=pool.time_limit) if pool else timedelta(hours=1)
        if now - attempt.last_started_at > limit + STARTED_SLACK:
            stuck.append(attempt)
    if stuck:
        sample = ", ".join(f"{a.task_name}[{a.task_id}]" for a in stuck[:3])
        yield _finding("started, never ended", WARN,
                       f"{len(stuck)} message(s) started longer ago than their pool's hard limit and never "
                       f"ended: {sample}",
                       "their worker died without requeueing them (or the row outlived a database outage): "
                       "if the lane is idle, `manage.py deadletters list` and the worker logs say more")
    else:
        yield _finding("started, never ended", OK,
                       "every start counted in the database ended or is within its pool's hard limit (quorum "
                       "lanes count deliveries on the broker instead: its consumer timeout returns a held message)")


def dead_letters(context: Context) -> Iterator[Finding]:
    """Messages that failed for good wait in the dead-letter queue."""
    if context.broker_down:
        return
    depth = queue_states([DEAD_LETTER_QUEUE.name])[DEAD_LETTER_QUEUE.name].messages
    if depth:
        yield _finding("dead letters", WARN, f"{depth} message(s) failed for good",
                       "`python manage.py deadletters list` says why; `deadletters replay <id>` retries one")
    else:
        yield _finding("dead letters", OK, "none")


def provider(context: Context) -> Iterator[Finding]:
    """The provider paused every worker after a 429, or a quota window is used up."""
    now = timezone.now()
    paused = ProviderQuota.objects.values_list("paused_until", flat=True).first()
    if paused and paused > now:
        yield _finding("provider pause", WARN, f"the provider asked us to wait until {paused:%H:%M:%S} UTC (429)",
                       "nothing to do: workers resume by themselves; frequent pauses mean the quota is set "
                       "above the provider's (WEATHER_QUOTA_*)")
    else:
        yield _finding("provider pause", OK, "the provider has not asked us to wait")
    limits = QuotaLimits.from_settings()
    used = usage()
    full = [f"{period} {used[period]}/{limits.cap(period, Consumer.BULK)}" for period in ("minute", "hour", "day")
            if limits.cap(period, Consumer.BULK) and used[period] >= limits.cap(period, Consumer.BULK)]
    if full:
        yield _finding("provider quota", WARN, f"the bulk share is used up: {', '.join(full)} locations",
                       "batches wait for quota by themselves; a refresh that cannot finish before its deadline "
                       f"marks its batches failed ({settings.WEATHER_REFRESH_DEADLINE_SECONDS} s)")
    else:
        yield _finding("provider quota", OK,
                       f"used {used['minute']}/{limits.per_minute or 'unlimited'} a minute, "
                       f"{used['hour']}/{limits.per_hour or 'unlimited'} an hour, "
                       f"{used['day']}/{limits.per_day or 'unlimited'} a day")

