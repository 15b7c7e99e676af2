"""Run the SaaS API sandbox on loopback.

    python tests/sandbox/server.py [--host 127.0.0.1] [--port 0] [--url-file PATH]

Port 0 picks a free port; the base URL is printed on stdout ("SANDBOX_URL=http://127.0.0.1:PORT") and,
with --url-file, written to that file once the server accepts connections.
"""

import argparse
import asyncio
import importlib
import os
import signal
import sys

from aiohttp import web

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import core  # noqa: E402

SERVICE_MODULES = ("dynatrace", "jira", "slack", "oncall", "keptn", "ui", "servicenow", "msgraph", "history")


def load_services():
    modules = []
    for name in SERVICE_MODULES:
        if os.path.exists(os.path.join(HERE, name + ".py")):
            modules.append(importlib.import_module(name))
    return modules


def create_app(public_url=None):
    return core.build_app(load_services(), public_url=public_url)


async def serve(host, port, url_file=None):
    app = create_app()
    # handler_cancellation: a handler whose client went away is cancelled (a hanging fault ends with the client)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    url = "http://%s:%d" % (host, bound)
    app[core.SANDBOX].public_url = url
    print("SANDBOX_URL=%s" % url, flush=True)
    if url_file:
        tmp = url_file + ".tmp"
        with open(tmp, "w") as handle:
            handle.write(url + "\n")
        os.replace(tmp, url_file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--url-file")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port, args.url_file))


if __name__ == "__main__":
    main()
