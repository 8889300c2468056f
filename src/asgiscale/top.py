"""`asgiscale top`: the admin server's `/status` as a live terminal view.

`render` turns the JSON of `/status` into a rich renderable and does no I/O; `fetch`
reads `/status` over HTTP; `top_command` redraws a `rich.live.Live` with both until Ctrl-C.

    $ asgiscale top                          # the admin server at $ASGISCALE_ADMIN or 127.0.0.1:9000
    $ asgiscale top --admin 10.0.0.5:9000 --interval 2
    $ asgiscale top --once                   # one frame, for scripts
"""

from __future__ import annotations

import datetime
import http.client
import json
import os
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

import click
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from asgiscale.config import DEFAULT_ADMIN, EXIT_USAGE, OFF

ENV_ADMIN = "ASGISCALE_ADMIN"
TIMEOUT = 3.0  # seconds to wait for /status
EVENTS_SHOWN = 8
STATE_STYLES = {"ready": "green", "booting": "yellow", "draining": "dark_orange"}
LEVEL_STYLES = {"warning": "yellow", "error": "red"}
EVENT_STYLES = {"spawn": "green", "ready": "green", "crash": "bold red", "kill": "red", "reload": "cyan"}


class AdminUnreachable(Exception):
    """`/status` could not be read; the message is one line, with the reason and a hint."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach the admin server at {url} ({reason}); is asgiscale run started with --admin?")
        self.url = url
        self.reason = reason


def admin_url(option: str | None, env: Mapping[str, str]) -> str:
    """The base URL of the admin server: `--admin`, else $ASGISCALE_ADMIN (unless 'off'), else the default.

    Takes a URL or HOST:PORT, like `asgiscale run --admin`; a wildcard host means this machine.

        >>> admin_url("0.0.0.0:9100", env={})
        'http://127.0.0.1:9100'
    """
    text = (option or "").strip()
    if not text:
        text = env.get(ENV_ADMIN, "").strip()
        if text.lower() == OFF:
            text = ""
    text = (text or DEFAULT_ADMIN).rstrip("/")
    if "://" not in text:
        text = "http://" + text
    parts = urllib.parse.urlsplit(text)
    host = parts.hostname or ""
    if host in ("", "0.0.0.0", "::"):
        local = "[::1]" if host == "::" else "127.0.0.1"
        netloc = local + (f":{parts.port}" if parts.port is not None else "")
        text = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    return text


def fetch(url: str, timeout: float = TIMEOUT) -> dict[str, Any]:
    """The JSON of `{url}/status`, or `AdminUnreachable`."""
    # No proxy: the admin server is on this machine or this network, and $http_proxy would hide it.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url + "/status", timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        raise AdminUnreachable(url, f"/status answered HTTP {exc.code}") from None
    except urllib.error.URLError as exc:
        raise AdminUnreachable(url, _reason(exc.reason)) from None
    except (OSError, http.client.HTTPException) as exc:
        raise AdminUnreachable(url, _reason(exc)) from None
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if not isinstance(document, dict) or "supervisor" not in document:
        raise AdminUnreachable(url, "/status did not answer asgiscale's JSON")
    return document


def _reason(error: object) -> str:
    if isinstance(error, (TimeoutError, socket.timeout)):
        return f"no answer in {TIMEOUT:g}s"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return str(error) or type(error).__name__


def render(status: Mapping[str, Any]) -> RenderableType:
    """One frame of `asgiscale top`: header, totals, workers and recent events."""
    return Group(_header(status), _totals(status), Text(), _workers(status), Text(), _events(status))


def render_unreachable(error: AdminUnreachable, last: Mapping[str, Any] | None) -> RenderableType:
    """The frame shown while the admin server does not answer: the error, over the last frame."""
    line = Text(f"{error}; retrying", style="bold red")
    return Group(line, render(last)) if last else line


def _header(status: Mapping[str, Any]) -> RenderableType:
    sup = status["supervisor"]
    title = Text.assemble(
        ("asgiscale ", "bold"),
        (str(status.get("version", "")), "dim"),
        "  ",
        (str(status.get("app", "")), "bold cyan"),
        " on ",
        str(status.get("listen", "")),
    )
    scaling = status.get("scaling")
    scaled = ""
    if scaling:
        decisions = sup.get("scale_decisions", {})
        scaled = (
            f" ({scaling['policy']} {scaling['min_workers']}-{scaling['max_workers']},"
            f" {decisions.get('up', 0)} up {decisions.get('down', 0)} down)"
        )
    line = Text.assemble(
        (sup["stage"], "green" if sup["stage"] == "running" else "yellow"),
        f" · up {_duration(sup['uptime'])} · generation {sup['generation']}",
        f" · {len(status['workers'])} workers, target {sup['target_workers']}{scaled} · ",
        ("ready" if sup["ready"] else f"not ready: {sup['readiness']}", "green" if sup["ready"] else "bold red"),
        " · ",
        ("healthy" if sup["healthy"] else f"unhealthy: {sup['health']}", "green" if sup["healthy"] else "bold red"),
    )
    return Group(title, line, Text())


def _totals(status: Mapping[str, Any]) -> RenderableType:
    totals, latency = status["totals"], status["latency"]
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for name in ("requests", "req/s", "errors", "in flight", "p50 ms", "p95 ms", "p99 ms", "restarts"):
        table.add_column(name, justify="right")
    restarts = sum(totals["restarts"].values())
    table.add_row(
        _int(totals["requests"]),
        _rate(status["rates"]["requests_per_second"]),
        Text(_int(totals["errors"]), style="red" if totals["errors"] else ""),
        _int(totals["in_flight"]),
        *(_ms(latency[q]) for q in ("p50", "p95", "p99")),
        Text(_int(restarts), style="yellow" if restarts else ""),
    )
    return table


def _workers(status: Mapping[str, Any]) -> RenderableType:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("slot", justify="right")
    table.add_column("pid", justify="right", no_wrap=True)
    table.add_column("state", no_wrap=True)
    for name in ("gen", "age", "requests", "in flight", "cpu %", "rss MB"):
        table.add_column(name, justify="right", no_wrap=True)
    for w in status["workers"]:
        table.add_row(
            str(w["slot"]),
            str(w["pid"]),
            Text(w["state"], style=STATE_STYLES.get(w["state"], "")),
            str(w["generation"]),
            _duration(w["age"]),
            _int(w["requests"]),
            _int(w["in_flight"]),
            "–" if w["cpu_percent"] is None else f"{w['cpu_percent']:.1f}",
            "–" if w["rss_bytes"] is None else f"{w['rss_bytes'] / 1048576:.1f}",
        )
    if not status["workers"]:
        table.add_row("", "", Text("no worker is alive", style="red"))
    return table


def _events(status: Mapping[str, Any]) -> RenderableType:
    table = Table.grid(padding=(0, 1))
    table.add_column(style="dim", no_wrap=True)
    table.add_column(no_wrap=True)
    table.add_column()
    for event in reversed(status.get("events", [])[-EVENTS_SHOWN:]):
        kind = event.get("event") or event.get("level", "")
        style = EVENT_STYLES.get(kind, LEVEL_STYLES.get(event.get("level", ""), "dim"))
        when = datetime.datetime.fromtimestamp(event["time"]).strftime("%H:%M:%S")
        table.add_row(
            when,
            Text(kind, style=style),
            Text(event.get("message", ""), style=LEVEL_STYLES.get(event.get("level", ""), "")),
        )
    return Group(Text("recent events", style="bold"), table)


def _int(value: int | float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def _rate(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.2f}" if value < 10 else f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    value = seconds * 1000
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours < 48 else f"{hours // 24}d {hours % 24}h"


def watch(console: Console, url: str, status: Mapping[str, Any], interval: float) -> None:
    """Redraw every `interval` seconds until interrupted; an unanswered fetch shows, then is retried."""
    with Live(render(status), console=console, auto_refresh=False, screen=True) as live:
        last: Mapping[str, Any] = status
        while True:
            time.sleep(interval)
            try:
                last = fetch(url, timeout=min(TIMEOUT, max(interval, 1.0)))
                frame = render(last)
            except AdminUnreachable as exc:
                frame = render_unreachable(exc, last)
            live.update(frame, refresh=True)


@click.command("top", context_settings={"max_content_width": 120})
@click.option(
    "--admin",
    metavar="URL",
    default=None,
    help=f"The admin server, as a URL or HOST:PORT.  [default: ${ENV_ADMIN}, else {DEFAULT_ADMIN}]",
)
@click.option("--once", is_flag=True, help="Print one frame and exit.")
@click.option(
    "--interval", type=click.FloatRange(min=0.1), default=1.0, show_default=True, help="Seconds between refreshes."
)
def top_command(admin: str | None, once: bool, interval: float) -> None:
    """Watch a running asgiscale: traffic, latency, workers and events, read from its admin server."""
    url = admin_url(admin, os.environ)
    try:
        status = fetch(url)
        console = Console()
        if once:
            console.print(render(status))
            return
        watch(console, url, status, interval)
    except AdminUnreachable as exc:
        click.echo(f"asgiscale: error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how top ends
