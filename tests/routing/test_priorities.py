"""Django task priorities onto message priorities: the mapping held to its written table, for every priority."""

from __future__ import annotations

import re

import pytest

from routing import priorities
from routing.generations import BrokerGeneration
from routing.lanes import LANES, MAX_PRIORITY, Priority
from routing.priorities import (
    BANDS,
    DJANGO_DEFAULT_PRIORITY,
    DJANGO_MAX_PRIORITY,
    DJANGO_MIN_PRIORITY,
    PriorityOutOfRangeError,
    django_priority,
    message_priority,
    quorum_class,
    serves_priorities,
)

EVERY_PRIORITY = range(DJANGO_MIN_PRIORITY, DJANGO_MAX_PRIORITY + 1)


def _written_table() -> list[tuple[int, int, int, str, str]]:
    """The module docstring's table: (lowest, highest, message priority, classic column, quorum column)."""
    rows = []
    for line in (priorities.__doc__ or "").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not re.match(r"-?\d", cells[0]):
            continue
        numbers = [int(n) for n in re.findall(r"-?\d+", cells[0])]
        lowest, highest = (numbers[0], numbers[-1])
        rows.append((lowest, highest, int(cells[1].split()[0]), cells[2], cells[3]))
    return rows


def test_every_django_priority_maps_monotonically_onto_a_level_the_classic_lane_declares():
    levels = [message_priority(p) for p in EVERY_PRIORITY]
    assert levels == sorted(levels), "a higher Django priority never gets a lower message priority"
    assert all(1 <= level <= MAX_PRIORITY for level in levels), "never unset (0) and within x-max-priority"
    assert message_priority(DJANGO_DEFAULT_PRIORITY) == Priority.API, "the default is an explicit middle value"
    assert message_priority(DJANGO_MAX_PRIORITY) == Priority.CLICK
    assert message_priority(DJANGO_MIN_PRIORITY) == Priority.WARMUP


def test_each_named_level_has_the_django_priority_that_is_sent_as_it():
    for level in Priority:
        assert message_priority(django_priority(level)) == level, level
    assert django_priority(Priority.API) == DJANGO_DEFAULT_PRIORITY


def test_on_rabbitmq_4_exactly_the_positive_priorities_are_high():
    for priority in EVERY_PRIORITY:
        assert (quorum_class(message_priority(priority)) == "high") == (priority > 0), priority


def test_the_bands_cover_every_priority_once():
    covered = [p for lowest, highest, _ in BANDS for p in range(lowest, highest + 1)]
    assert sorted(covered) == list(EVERY_PRIORITY)


def test_the_written_table_is_the_mapping():
    table = _written_table()
    assert [(lowest, highest, level) for lowest, highest, level, _, _ in table] == [tuple(b) for b in BANDS]
    for lowest, highest, level, classic, quorum in table:
        assert classic == f"strict level {level}"
        assert quorum == quorum_class(level)
        assert {message_priority(p) for p in range(lowest, highest + 1)} == {level}


@pytest.mark.parametrize("priority", [DJANGO_MIN_PRIORITY - 1, DJANGO_MAX_PRIORITY + 1])
def test_a_priority_outside_django_s_range_is_refused(priority):
    with pytest.raises(PriorityOutOfRangeError):
        message_priority(priority)


def test_only_the_prioritised_lane_serves_priorities_on_rabbitmq_3_and_every_lane_on_4():
    for lane in LANES:
        assert serves_priorities(lane.name, BrokerGeneration.RABBITMQ_3) is lane.prioritised
        assert serves_priorities(lane.name, BrokerGeneration.RABBITMQ_4) is True
