"""A small local stand-in for the AWX/AAP controller API that ansible-rulebook's run_job_template uses.

It serves exactly the calls ansible-rulebook 1.3.2 makes (job_template_runner.py, shared_job_monitor.py):
  GET  /api/v2/config/                              (connection check)
  GET  /api/v2/unified_job_templates/?name=NAME     (find the template and its launch URL)
  POST /api/v2/job_templates/{id}/launch/           (launch; the body holds extra_vars and limit)
  GET  /api/v2/jobs/?id__in=1,2&page_size=2         (poll; every job is reported successful)
and records every launch, so a test can assert what the rulebook asked the controller to run where.
"""

import asyncio
import itertools
import threading

from aiohttp import web


class AwxStandIn(object):
    def __init__(self, templates, organization="Default", token="awx-token"):
        self.templates = {name: number for number, name in enumerate(templates, start=7)}
        self.organization = organization
        self.token = token
        self.launches = []
        self.ids = itertools.count(100)
        self.loop = None
        self.runner = None
        self.url = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        if not self._ready.wait(20):
            raise RuntimeError("AWX stand-in did not start")
        return self

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def _run(self):
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self._ready.set()
        try:
            self.loop.run_forever()
        finally:
            self.loop.run_until_complete(self.runner.cleanup())
            self.loop.close()

    async def _start(self):
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/api/v2/config/", self.config)
        app.router.add_get("/api/v2/unified_job_templates/", self.unified)
        app.router.add_post("/api/v2/job_templates/{id}/launch/", self.launch)
        app.router.add_get("/api/v2/jobs/", self.jobs)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = "http://127.0.0.1:%d" % self.runner.addresses[0][1]

    @web.middleware
    async def _auth(self, request, handler):
        if request.headers.get("Authorization") != "Bearer " + self.token:
            return web.json_response({"detail": "Authentication credentials were not provided."}, status=401)
        return await handler(request)

    async def config(self, request):
        return web.json_response({"version": "24.6.1"})

    async def unified(self, request):
        name = request.query.get("name")
        results = [{"id": number, "type": "job_template", "name": template,
                    "summary_fields": {"organization": {"name": self.organization}},
                    "related": {"launch": "/api/v2/job_templates/%d/launch/" % number},
                    "ask_limit_on_launch": True, "ask_labels_on_launch": False, "ask_inventory_on_launch": False,
                    "ask_variables_on_launch": True}
                   for template, number in self.templates.items() if template == name]
        return web.json_response({"count": len(results), "next": None, "results": results})

    async def launch(self, request):
        number = int(request.match_info["id"])
        name = [t for t, n in self.templates.items() if n == number][0]
        body = await request.json()
        job = next(self.ids)
        self.launches.append({"template": name, "job": job, "limit": body.get("limit"),
                              "extra_vars": body.get("extra_vars")})
        return web.json_response({"id": job, "job": job, "url": "/api/v2/jobs/%d/" % job, "status": "pending"}, status=201)

    async def jobs(self, request):
        ids = [i for i in request.query.get("id__in", "").split(",") if i]
        return web.json_response({"count": len(ids), "next": None, "results": [
            {"id": int(i), "status": "successful", "failed": False, "artifacts": {}, "url": "/api/v2/jobs/%s/" % i}
            for i in ids]})
