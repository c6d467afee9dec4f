"""The quota reservation and the rate limit's count as PostgreSQL functions: one round trip each.

Both take a row lock, read, decide and write. Done from Python that is a
transaction of four to six round trips on every click and every provider request;
as a function it is one statement, with the same lock and the same order inside
(above all: the quota reads the clock after the lock is granted, never before).
weather/quota.py and weather/ratelimit.py call them on PostgreSQL and keep the
Python path for SQLite, which serialises writers anyway.
"""

from django.db import migrations

RESERVE_QUOTA = """
CREATE OR REPLACE FUNCTION weather_reserve_quota(
    p_locations integer, p_consumer text, p_span_seconds double precision[], p_caps integer[])
RETURNS TABLE (granted boolean, at timestamptz, paused_until timestamptz, used bigint[])
LANGUAGE plpgsql AS $$
DECLARE
    v_paused timestamptz;
    v_now timestamptz;
    v_used bigint[] := '{}';
    v_sum bigint;
BEGIN
    SELECT q.paused_until INTO v_paused FROM weather_providerquota q WHERE q.id = 1 FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;  -- no lock row yet: the caller creates it and asks again
    END IF;
    -- The clock once the lock is held: a now read before the wait would count a stale window.
    v_now := clock_timestamp();
    IF v_paused IS NOT NULL AND v_paused > v_now THEN
        RETURN QUERY SELECT false, v_now, v_paused, v_used;
        RETURN;
    END IF;
    FOR i IN 1 .. coalesce(array_length(p_span_seconds, 1), 0) LOOP
        -- In seconds: an interval of days would follow the session's timezone across a DST change.
        SELECT coalesce(sum(g.locations), 0) INTO v_sum
          FROM weather_quotagrant g WHERE g.granted_at > v_now - make_interval(secs => p_span_seconds[i]);
        v_used := v_used || v_sum;
    END LOOP;
    FOR i IN 1 .. coalesce(array_length(p_span_seconds, 1), 0) LOOP
        -- A negative cap is no limit.
        IF p_caps[i] >= 0 AND v_used[i] + p_locations > p_caps[i] THEN
            RETURN QUERY SELECT false, v_now, NULL::timestamptz, v_used;
            RETURN;
        END IF;
    END LOOP;
    INSERT INTO weather_quotagrant (granted_at, locations, consumer) VALUES (v_now, p_locations, p_consumer);
    RETURN QUERY SELECT true, v_now, NULL::timestamptz, v_used;
END
$$;
"""

RATE_HIT = """
CREATE OR REPLACE FUNCTION weather_rate_hit(
    p_key text, p_limit integer, p_window double precision, p_now double precision)
RETURNS double precision
LANGUAGE plpgsql AS $$
DECLARE
    v_hits jsonb;
    v_recent double precision[];
    v_count integer;
BEGIN
    INSERT INTO weather_ratewindow (key, hits, updated_at) VALUES (p_key, '[]'::jsonb, now())
        ON CONFLICT (key) DO NOTHING;
    SELECT w.hits INTO v_hits FROM weather_ratewindow w WHERE w.key = p_key FOR UPDATE;
    SELECT coalesce(array_agg(t ORDER BY t), '{}') INTO v_recent
      FROM (SELECT value::double precision AS t FROM jsonb_array_elements_text(v_hits)) accepted
     WHERE t > p_now - p_window;
    v_count := coalesce(array_length(v_recent, 1), 0);
    IF v_count >= p_limit THEN
        -- Refused: when enough of the accepted ones leave the window.
        RETURN v_recent[v_count - p_limit + 1] + p_window;
    END IF;
    UPDATE weather_ratewindow SET hits = to_jsonb(v_recent || p_now), updated_at = now() WHERE key = p_key;
    RETURN NULL;
END
$$;
"""


def _function(create: str, signature: str) -> migrations.RunPython:
    """Create a function on PostgreSQL (drop it going back); SQLite keeps the Python path."""

    def forwards(apps, schema_editor) -> None:
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(create)

    def backwards(apps, schema_editor) -> None:
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(f"DROP FUNCTION IF EXISTS {signature}")

    return migrations.RunPython(forwards, backwards)


class Migration(migrations.Migration):

    dependencies = [
        ("weather", "0012_beat_heartbeat_timezone"),
    ]

    operations = [
        _function(RESERVE_QUOTA, "weather_reserve_quota(integer, text, double precision[], integer[])"),
        _function(RATE_HIT, "weather_rate_hit(text, integer, double precision, double precision)"),
    ]
