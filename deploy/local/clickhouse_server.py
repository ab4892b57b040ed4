#!/usr/bin/env python3
"""A real ClickHouse server (HTTP + native TCP on 127.0.0.1) from the chdb-core wheel.

    clickhouse_server.py --base DIR [--http-port 8123] [--tcp-port 9000]

Used by deploy/local/clickhouse.sh; needs chdb-core==26.9.0 (ClickHouse 26.9).

How it works: chdb's private entry point ``chdb._chdb.query`` runs a complete
clickhouse-local ``LocalServer`` for the length of one call. That server honours
``SYSTEM START LISTEN HTTP|TCP`` and takes ports and ``listen_host`` from
``./config.xml`` in the working directory. The call is kept alive by a query that
reads a named pipe, so the process is a ClickHouse server until a line is written
to ``DIR/stop.fifo``. (``chdb.connect()`` cannot do this: "start_servers_callback
is not set".) The entry point is private: keep chdb-core pinned.

Layout under DIR: ``config/config.xml`` (written at each start), ``data/`` (the
databases, kept across restarts), ``stop.fifo``, ``clickhouse.log``.

Stopping: write a line to ``DIR/stop.fifo``, or send SIGTERM/SIGINT (handled the
same way: the query ends, ClickHouse shuts down cleanly, exit 0). Exit 1 if the
server could not start (for example a port in use); the reason is printed.
"""
import argparse
import errno
import os
import signal
import stat
import sys
import threading
import time

CONFIG = """<clickhouse>
    <!-- written by deploy/local/clickhouse_server.py at each start -->
    <listen_host>127.0.0.1</listen_host>
    <http_port>{http_port}</http_port>
    <tcp_port>{tcp_port}</tcp_port>
    <timezone>UTC</timezone>
    <logger>
        <log>{log}</log>
        <level>information</level>
    </logger>
</clickhouse>
"""

STOP_GRACE_SECONDS = 60


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="state directory (config, data, fifo, log)")
    p.add_argument("--http-port", type=int, default=8123)
    p.add_argument("--tcp-port", type=int, default=9000)
    return p.parse_args()


def say(msg):
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} clickhouse_server.py[{os.getpid()}]: {msg}", flush=True)


def request_stop(fifo):
    """Writes one line to the fifo without blocking; False if nobody reads it yet."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as e:
        if e.errno == errno.ENXIO:  # the query has not opened the pipe (yet, or any more)
            return False
        raise
    try:
        os.write(fd, b"stop\n")
    finally:
        os.close(fd)
    return True


def main():
    args = parse_args()
    base = os.path.abspath(args.base)
    conf_dir = os.path.join(base, "config")
    data_dir = os.path.join(base, "data")
    fifo = os.path.join(base, "stop.fifo")
    os.makedirs(conf_dir, exist_ok=True)
    os.makedirs(data_dir, exist_ok=True)
    with open(os.path.join(conf_dir, "config.xml"), "w") as f:
        f.write(CONFIG.format(http_port=args.http_port, tcp_port=args.tcp_port,
                              log=os.path.join(base, "clickhouse.log")))
    if os.path.lexists(fifo) and not stat.S_ISFIFO(os.lstat(fifo).st_mode):
        os.remove(fifo)
    if not os.path.exists(fifo):
        os.mkfifo(fifo)

    # Import before chdir: chdb's __init__ puts the working directory back after import.
    import chdb._chdb as _chdb

    os.chdir(conf_dir)  # LocalServer reads ./config.xml
    outcome = {}

    def serve():
        try:
            outcome["result"] = _chdb.query(
                "SYSTEM START LISTEN HTTP; SYSTEM START LISTEN TCP; "
                f"SELECT count() FROM file('{fifo}', 'LineAsString')",  # blocks until the fifo is written
                "TabSeparated",  # also the HTTP interface's default output format
                path=data_dir,
            )
        except BaseException as e:  # reported by the main thread
            outcome["exception"] = e

    # The query runs in a worker thread so that the main thread can turn SIGTERM and
    # SIGINT into a write to the fifo: a clean ClickHouse shutdown instead of a kill.
    stop_requested = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop_requested.set())
    signal.signal(signal.SIGINT, lambda *_: stop_requested.set())

    worker = threading.Thread(target=serve, name="clickhouse", daemon=True)
    worker.start()
    say(f"ClickHouse starting: http 127.0.0.1:{args.http_port}, tcp 127.0.0.1:{args.tcp_port}, data {data_dir}")

    stop_sent_at = None
    while worker.is_alive():
        worker.join(0.2)
        if stop_requested.is_set() and stop_sent_at is None and request_stop(fifo):
            say("signal received: stopping ClickHouse")
            stop_sent_at = time.monotonic()
        if stop_sent_at is not None and time.monotonic() - stop_sent_at > STOP_GRACE_SECONDS:
            say(f"ClickHouse did not stop within {STOP_GRACE_SECONDS}s: exiting anyway")
            os._exit(1)

    if "exception" in outcome:
        say(f"ClickHouse failed: {outcome['exception']!r}")
        return 1
    res = outcome["result"]
    if res.has_error():
        say(f"ClickHouse failed: {res.error_message()}")
        return 1
    if not res.bytes().strip():  # e.g. a port in use: the reason was printed above
        say("ClickHouse failed to start (see the messages above)")
        return 1
    say("ClickHouse stopped")
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # LocalServer has shut down and flushed its tables by now; skip the interpreter's
    # and the engine's static teardown, which only adds seconds to every stop.
    os._exit(code)
