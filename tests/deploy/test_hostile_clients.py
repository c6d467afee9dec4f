"""Hostile clients against the web tier as deployed: the real web server and the nginx edge, on loopback.

Every attack is bounded in connections and seconds and targets only the
servers this module starts.
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django_celery_results.models import TaskResult

from tests.factories import make_city
from tools.harness import ROOT, purge_lanes, wait_for
from tools.web_tier import WebTier, web_tier

pytestmark = pytest.mark.integration

# Short enough for the tests to cross them; the edge's own timeouts are those of deploy/nginx/.
WEB_HEADER_TIMEOUT_S = 3
WEB_BODY_TIMEOUT_S = 4
WEB_MAX_BODY_BYTES = 4096
# More than the web process has app threads (WEB_THREADS, 2 x cores + 1 by default).
SLOW_BODIES = 12
# A probe not answered within this while slow clients hold connections fails its test.
PROBE_BOUND_S = 1
RATE_LIMIT, RATE_WINDOW_S = 5, 4
LOGIN_FAILURES = 3
ATTACKERS = 10


@pytest.fixture(scope="module")
def tier(pools) -> Iterator[WebTier]:
    env = {**pools.env, "WEB_HEADER_TIMEOUT_MS": str(WEB_HEADER_TIMEOUT_S * 1000),
           "WEB_BODY_TIMEOUT_MS": str(WEB_BODY_TIMEOUT_S * 1000), "WEB_MAX_BODY_BYTES": str(WEB_MAX_BODY_BYTES),
           "REFRESH_RATE_LIMIT_PER_MINUTE": str(RATE_LIMIT), "REFRESH_RATE_WINDOW_SECONDS": str(RATE_WINDOW_S),
           "LOGIN_FAILURE_LIMIT": str(LOGIN_FAILURES), "NUM_TRUSTED_PROXIES": "1"}
    with web_tier(env) as running:
        yield running
    purge_lanes()


def _address(base: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(base)
    return parts.hostname, parts.port


@dataclass
class Held:
    """How a slow connection ended: whether the server closed it, what it said (b"" for nothing), after how much."""

    closed_by_server: bool
    answer: bytes
    trickles: int  # bytes sent after the first pause, all taken before the close


def _hold(base: str, head: bytes, trickle: bytes | None, give_up_s: float,
          connected: threading.Semaphore | None = None) -> Held:
    """Send `head`, then `trickle` once a second (or nothing), until the server closes or `give_up_s` passes."""
    give_up = time.monotonic() + give_up_s
    trickles = 0
    with socket.create_connection(_address(base), timeout=1) as conn:
        conn.sendall(head)
        if connected is not None:
            connected.release()
        while time.monotonic() < give_up:
            try:
                chunk = conn.recv(4096)
                # Closed (b""), or an answer, which the server sends only as it closes a stalled request.
                return Held(True, chunk, trickles)
            except TimeoutError:
                pass
            except ConnectionResetError:
                # Closed too, with bytes of ours still unread on its side: the kernel answers RST, not FIN.
                return Held(True, b"", trickles)
            if trickle:
                try:
                    conn.sendall(trickle)
                    trickles += 1
                except OSError:
                    return Held(True, b"", trickles)
    return Held(False, b"", trickles)


def _all_connected(connected: threading.Semaphore, count: int) -> None:
    """Wait until `count` attackers have sent their first bytes (each within the connect bound)."""
    for _ in range(count):
        assert connected.acquire(timeout=10), "an attacker could not connect"


def _status(answer: bytes) -> int | None:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else None


def _bounded(base: str, method: str, path: str, timeout: float = 5,
             **kwargs: object) -> tuple[int, bytes, http.client.HTTPResponse]:
    """One request; a server that does not answer within `timeout` fails it (socket.timeout)."""
    host, port = _address(base)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, **kwargs)
        response = conn.getresponse()
        body = response.read()
        return response.status, body, response
    finally:
        conn.close()


def _edge_timeouts(tier: WebTier, request_line: str) -> int:
    """Requests the edge ended with 408, its answer to a client that stalled past a timeout."""
    return (tier.edge_log_dir / "access.log").read_text().count(f'"{request_line}" 408 ')


SLOW_HEADERS = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"


def _slow_body(path: str) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: 1000\r\n\r\n").encode() + b"a=" + b"x" * 8


def test_slow_headers_and_bodies_do_not_stall_the_tier(tier, live):
    city = make_city()
    connected = threading.Semaphore(0)
    refresh = f"/cities/{city.pk}/refresh"
    with ThreadPoolExecutor(max_workers=2 * ATTACKERS) as attackers:
        headers = [attackers.submit(_hold, tier.edge, SLOW_HEADERS, b"X-Slow: 1\r\n", 20, connected)
                   for _ in range(ATTACKERS)]
        # Dashboard POSTs whose body never arrives.
        bodies = [attackers.submit(_hold, tier.edge, _slow_body(refresh), None, 20, connected)
                  for _ in range(ATTACKERS)]
        _all_connected(connected, 2 * ATTACKERS)
        # Probing for as long as the slow clients are held, each probe answered within PROBE_BOUND_S.
        probes = []
        while not all(f.done() for f in headers + bodies):
            probes += [_bounded(tier.edge, "GET", path, timeout=PROBE_BOUND_S)[0] for path in ("/healthz", "/readyz")]
        status, body, _ = _bounded(tier.edge, "POST", f"/api/cities/{city.pk}/refresh", timeout=PROBE_BOUND_S)
        assert status == 202, body
        header_ends = [f.result() for f in headers]
        body_ends = [f.result() for f in bodies]
    assert len(probes) >= 4, probes
    assert set(probes) == {200}, probes
    for held in header_ends + body_ends:
        # Dropped by the edge (not given up on by the client), with no 5xx; the trickling ones after taking some.
        assert held.closed_by_server, held
        assert (_status(held.answer) or 400) < 500, held
    assert all(held.trickles >= 1 for held in header_ends), header_ends
    # Each one ended by the edge's client timeouts (nginx's 408): the app never saw a half-sent body.
    assert _edge_timeouts(tier, "GET /healthz HTTP/1.1") == ATTACKERS
    assert _edge_timeouts(tier, f"POST {refresh} HTTP/1.1") == ATTACKERS
    assert "POST /cities/" not in tier.web_log.read_text(), "a half-sent body reached the app"


def test_the_web_server_alone_drops_slow_headers_and_keeps_answering(tier, live):
    # scripts/run and a PaaS dyno run the web server without the edge.
    connected = threading.Semaphore(0)
    with ThreadPoolExecutor(max_workers=ATTACKERS) as attackers:
        held = [attackers.submit(_hold, tier.web, SLOW_HEADERS, b"X-Slow: 1\r\n", 15, connected)
                for _ in range(ATTACKERS)]
        _all_connected(connected, ATTACKERS)
        probes = []
        while not all(f.done() for f in held):
            probes.append(_bounded(tier.web, "GET", "/healthz", timeout=PROBE_BOUND_S)[0])
        ends = [f.result() for f in held]
    assert len(probes) >= 2, probes
    assert set(probes) == {200}, probes
    for end in ends:
        # Dropped by the web server's header timeout, after taking the trickle for a while, with no 5xx.
        assert end.closed_by_server, end
        assert end.trickles >= 1, end
        assert (_status(end.answer) or 400) < 500, end


def test_the_web_server_alone_bounds_slow_bodies_and_keeps_answering(tier, live):
    # A PaaS router and scripts/run hand bodies to the web server as they come: one byte a second here.
    city = make_city()
    with ThreadPoolExecutor(max_workers=SLOW_BODIES) as attackers:
        held = [attackers.submit(_hold, tier.web, _slow_body(f"/cities/{city.pk}/refresh"), b"x",
                                 WEB_BODY_TIMEOUT_S + 10) for _ in range(SLOW_BODIES)]
        probes = []
        # Probing for as long as the slow bodies are held, each probe within the client's bound (5 s).
        while not all(f.done() for f in held):
            probes.append(_bounded(tier.web, "GET", "/healthz")[0])
            probes.append(_bounded(tier.web, "GET", "/readyz")[0])
        ends = [f.result() for f in held]
    assert len(probes) >= 4, probes
    assert set(probes) == {200}, probes
    # Each slow body was answered 408 by the web server itself, without reaching Django.
    assert [_status(end.answer) for end in ends] == [408] * SLOW_BODIES, ends
    log = tier.web_log.read_text()
    assert log.count(f"POST /cities/{city.pk}/refresh 408") == SLOW_BODIES
    # A body sent at once is read and served as before; one over the size is refused before the app.
    status, body, _ = _bounded(tier.web, "POST", f"/api/cities/{city.pk}/refresh", body=b"{}",
                                headers={"Content-Type": "application/json"})
    assert status == 202, body
    status, _, response = _bounded(tier.web, "POST", f"/api/cities/{city.pk}/refresh",
                                    body=b"x" * (WEB_MAX_BODY_BYTES + 1))
    assert status == 413
    assert response.headers["Connection"] == "close"
    # The accepted fetch ends before the test does: its writes never meet the next test's flush of the tables.
    task_id = json.loads(body)["task_id"]
    wait_for(lambda: TaskResult.objects.filter(task_id=task_id, status="SUCCESS").exists(), timeout=30,
             what="the accepted fetch to end")


def test_an_encoded_newline_in_a_path_cannot_forge_a_log_line(tier, live):
    forged = "2026-12-02 21:45:00,000 INFO f_brain.access[1]: POST /admin/login/ 302 1.0ms"
    for base in (tier.web, tier.edge):
        for path in (f"/x%0a{forged}", f"/x%0d%0a{forged}", f"/x%e2%80%a8{forged}"):
            _bounded(base, "GET", urllib.parse.quote(path, safe="/%"))
    log = tier.web_log.read_text()
    assert not [line for line in log.splitlines() if line.startswith(forged[:23])], "a forged line was written"
    assert "/x\\x0a2026-12-02 21:45:00,000" in log, "the requests were not logged, escaped"


def test_head_answers_carry_no_body(tier, live):
    make_city()
    for path in ("/", "/healthz", "/api/cities/", "/admin/login/"):
        status, body, response = _bounded(tier.web, "HEAD", path)
        get_status, get_body, _ = _bounded(tier.web, "GET", path)
        assert (status, body) == (get_status, b""), path
        assert int(response.headers["Content-Length"]) == len(get_body), path


def test_a_burst_across_a_window_boundary_admits_no_more_than_the_limit(tier, live):
    city = make_city()
    # Start just before a window boundary of the clock: a fixed window would admit the
    # limit on each side of it.
    while not 0.85 * RATE_WINDOW_S <= time.time() % RATE_WINDOW_S < 0.9 * RATE_WINDOW_S:
        time.sleep(0.01)
    statuses = []
    for _ in range(2 * RATE_LIMIT):
        statuses.append(_bounded(tier.edge, "POST", f"/api/cities/{city.pk}/refresh")[0])
        time.sleep(0.1)
    assert statuses.count(202) == RATE_LIMIT, statuses
    assert set(statuses) == {202, 429}, statuses


def _admin_login(base: str, password: str, forwarded_for: str | None = None) -> int:
    """One try at the admin login form, as a browser makes it; the status of the answer to the POST.

    `forwarded_for`: the client address the one trusted proxy reports (NUM_TRUSTED_PROXIES=1), sent
    straight to the web server; without it the client is the edge's peer, 127.0.0.1.
    """
    via = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    _, page, response = _bounded(base, "GET", "/admin/login/", headers=via)
    token = page.decode().split('name="csrfmiddlewaretoken" value="', 1)[1].split('"', 1)[0]
    cookie = response.headers["Set-Cookie"].split(";", 1)[0]
    form = urllib.parse.urlencode({"csrfmiddlewaretoken": token, "username": "admin", "password": password,
                                   "next": "/admin/"})
    return _bounded(base, "POST", "/admin/login/", body=form, headers={
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie, "Referer": f"{base}/admin/login/",
        **via})[0]


def test_password_guessing_locks_out_the_guesser_not_the_account(tier, live, settings):
    settings.AXES_FAILURE_LIMIT = LOGIN_FAILURES  # as the served processes have it, for /ops/ here
    User.objects.create_superuser("admin", password="the-right-password-42")
    stranger = "198.51.100.7"
    # The form again after each wrong password, until the one that reaches the limit locks the login.
    tries = [_admin_login(tier.web, f"guess-{n}", stranger) for n in range(LOGIN_FAILURES)]
    assert tries == [200] * (LOGIN_FAILURES - 1) + [429]
    # The right password no longer gets in from the guesser's address ...
    assert _admin_login(tier.web, "the-right-password-42", stranger) == 429
    # ... and the account's owner, elsewhere, still logs in.
    assert _admin_login(tier.edge, "the-right-password-42") == 302
    # The operator sees the locked pair on /ops/ ...
    staff = Client()
    staff.force_login(User.objects.create_user("operator", is_staff=True))
    page = staff.get("/ops/").content.decode()
    assert f"axes_reset_ip_username {stranger} admin" in page
    assert "axes_reset_username" not in page
    # ... and unlocks it from a shell.
    env = {**live.env, "LOGIN_FAILURE_LIMIT": str(LOGIN_FAILURES)}
    subprocess.run([sys.executable, "manage.py", "axes_reset_ip_username", stranger, "admin"], cwd=ROOT, env=env,
                   check=True, timeout=60, capture_output=True)
    assert _admin_login(tier.web, "the-right-password-42", stranger) == 302


def test_every_html_page_carries_a_content_security_policy(tier, live):
    for path in ("/", "/admin/login/", "/api/docs"):
        status, _, response = _bounded(tier.edge, "GET", path)
        assert status == 200, path
        policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy, path
        assert "unsafe-inline" not in policy, path


def test_a_huge_host_header_is_one_short_log_line(tier, live):
    before = tier.web_log.read_text()
    host = "h" * 8000 + ".example"
    status, _, _ = _bounded(tier.web, "GET", "/", headers={"Host": host})
    assert status == 400
    wait_for(lambda: host[:100] in tier.web_log.read_text()[len(before):], timeout=10, interval=0.1,
             what="the access line")
    new = tier.web_log.read_text()[len(before):]
    lines = [line for line in new.splitlines() if "h" * 50 in line]
    assert len(lines) == 1, new[:3000]
    assert len(lines[0]) < 600, lines[0][:700]
    assert "Traceback" not in new
