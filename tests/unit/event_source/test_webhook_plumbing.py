"""Shared webhook plumbing, through the on-call callback source: auth, TLS, limits, bad input, dedup."""

import asyncio
import json
import ssl

import aiohttp
import pytest

from ansible_collections.selfheal.devops.extensions.eda.plugins.event_source import _webhook
from ansible_collections.selfheal.devops.extensions.eda.plugins.event_source import oncall_callback


XM_RESPONSE = {"eventIdentifier": "981006", "recipient": "oncall.primary", "response": "Restart",
               "annotation": "go", "date": "2026-11-23T23:00:00Z",
               "eventProperties": {"selfheal_incident_key#en": "dt-P-1234", "Summary": "crash"}}
PD_ACK = {"event": {"id": "01DEN", "event_type": "incident.acknowledged", "resource_type": "incident",
                    "agent": {"id": "PUSER", "summary": "Alex Oncall", "type": "user_reference"},
                    "data": {"id": "Q1ABC", "type": "incident", "incident_key": "dt-P-77", "title": "disk full"}}}


async def post(url, body=None, raw=None, headers=None, ssl_context=None):
    data = raw if raw is not None else json.dumps(body).encode()
    send = {"Content-Type": "application/json"}
    send.update(headers or {})
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=data, headers=send, ssl=ssl_context) as response:
            return response.status, await response.text(), response.headers


@pytest.fixture
async def source(run_source):
    return await run_source(oncall_callback.main, {"token": "s3cret-token", "path": "/cb"})


async def test_xmatters_response_becomes_one_event(source):
    status, dummy, dummy_headers = await post(source.base + "/cb", XM_RESPONSE, headers={"Authorization": "Bearer s3cret-token"})
    assert status == 202
    again, dummy, dummy_headers = await post(source.base + "/cb", XM_RESPONSE, headers={"Authorization": "Bearer s3cret-token"})
    assert again == 202
    events = source.events()
    assert len(events) == 1
    oncall = events[0]["oncall"]
    assert {k: oncall[k] for k in ("provider", "incident_key", "response", "responder", "event_id")} == {
        "provider": "xmatters", "incident_key": "dt-P-1234", "response": "Restart", "responder": "oncall.primary",
        "event_id": "981006"}


async def test_xmatters_callback_as_the_outbound_integration_sends_it(source):
    body = {"recipient": "oncall.primary", "device": "Work Email", "response": "Roll back", "annotation": "null",
            "date": "2026-11-23T22:40:01.120+0000", "eventIdentifier": 981001,
            "eventProperties": [{"selfheal_incident_key": "dt-P-9"}, {"summary": "slow"}]}
    status, dummy, dummy_headers = await post(source.base + "/cb", body, headers={"Authorization": "Bearer s3cret-token"})
    assert status == 202
    oncall = source.events()[0]["oncall"]
    assert (oncall["incident_key"], oncall["response"], oncall["event_id"], oncall["annotation"]) == ("dt-P-9", "Roll back", "981001", None)


async def test_pagerduty_v3_webhook(source):
    status, dummy, dummy_headers = await post(source.base + "/cb", PD_ACK, headers={"Authorization": "Bearer s3cret-token"})
    assert status == 202
    oncall = source.events()[0]["oncall"]
    assert (oncall["provider"], oncall["response"], oncall["incident_key"], oncall["responder"]) == (
        "pagerduty", "acknowledged", "dt-P-77", "Alex Oncall")


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"},
                                     {"X-Token": "Bearer s3cret-token"}])
async def test_bad_token_is_401_and_emits_nothing(source, headers):
    status, text, dummy = await post(source.base + "/cb", XM_RESPONSE, headers=headers)
    assert status == 401 and "s3cret" not in text
    assert source.events() == []


@pytest.mark.parametrize("raw, content_type, expected", [
    (b"{not json", "application/json", 400),
    (b"[1, 2]", "application/json", 400),
    (b"\xff\xfe\x00", "application/json", 400),
    (json.dumps({"response": "Restart"}).encode(), "application/json", 400),  # no event id
    (json.dumps({"event": {"event_type": 5}}).encode(), "application/json", 400),
    (json.dumps(XM_RESPONSE).encode(), "text/plain", 415),
    (b"x" * 300000, "application/json", 413),
])
async def test_bad_input_is_4xx_and_emits_nothing(source, raw, content_type, expected):
    status, dummy, dummy_headers = await post(source.base + "/cb", raw=raw,
                                              headers={"Authorization": "Bearer s3cret-token", "Content-Type": content_type})
    assert status == expected
    assert source.events() == []


async def test_a_busy_rules_engine_gets_503_with_retry_after_and_the_retry_is_delivered(run_source, rules_engine):
    """ansible-rulebook's queue holds one event: while the engine is busy, a callback waits for room, then 503."""
    engine = rules_engine()
    engine.pause()
    running = await run_source(oncall_callback.main, {"path": "/cb", "handoff_timeout": 0.5}, engine=engine)
    first, dummy, dummy_headers = await post(running.base + "/cb", XM_RESPONSE)
    second_body = dict(XM_RESPONSE, eventIdentifier="2")
    started = asyncio.get_running_loop().time()
    second, dummy, headers = await post(running.base + "/cb", second_body)
    waited = asyncio.get_running_loop().time() - started
    assert (first, second, headers.get("Retry-After")) == (202, 503, "5") and 0.4 < waited < 3
    engine.resume()
    again, dummy, dummy_headers = await post(running.base + "/cb", second_body)  # the sender retries: not a duplicate
    assert again == 202
    assert [e["oncall"]["event_id"] for e in running.events()] == ["981006", "2"]


async def test_more_waiting_callbacks_than_max_pending_are_refused_at_once(run_source, rules_engine):
    engine = rules_engine()
    engine.pause()
    running = await run_source(oncall_callback.main, {"path": "/cb", "max_pending": 2, "handoff_timeout": 3}, engine=engine)
    await post(running.base + "/cb", XM_RESPONSE)  # fills the queue
    bodies = [dict(XM_RESPONSE, eventIdentifier=str(n)) for n in range(3)]
    tasks = [asyncio.ensure_future(post(running.base + "/cb", body)) for body in bodies]
    done, dummy = await asyncio.wait(tasks, timeout=1.5)
    assert [t.result()[0] for t in done] == [503]  # the third waiter: refused at once, the two others still waiting
    engine.resume()
    statuses = sorted(result[0] for result in await asyncio.gather(*tasks))
    assert statuses == [202, 202, 503]
    assert len(running.events()) == 3


@pytest.mark.parametrize("fmt, prefix", [("hex", ""), ("base64", ""), ("hex", "v1=")])
async def test_hmac_signature(run_source, fmt, prefix):
    args = {"hmac_secret": "hmac-key", "hmac_format": fmt, "hmac_prefix": prefix, "hmac_header": "X-Sig", "path": "/cb"}
    running = await run_source(oncall_callback.main, args)
    body = json.dumps(PD_ACK).encode()
    good = prefix + _webhook.signature("hmac-key", body, "sha256", fmt)
    bad = prefix + _webhook.signature("other-key", body, "sha256", fmt)
    assert (await post(running.base + "/cb", raw=body, headers={"X-Sig": bad}))[0] == 401
    assert (await post(running.base + "/cb", raw=body, headers={}))[0] == 401
    tampered = body.replace(b"acknowledged", b"resolved")
    assert (await post(running.base + "/cb", raw=tampered, headers={"X-Sig": good}))[0] == 401
    assert (await post(running.base + "/cb", raw=body, headers={"X-Sig": good}))[0] == 202
    assert len(running.events()) == 1


async def test_tls_and_mutual_tls(run_source, certs):
    args = {"certfile": certs["server"][0], "keyfile": certs["server"][1], "cafile": certs["ca"], "path": "/cb"}
    with_client = ssl.create_default_context(cafile=certs["ca"])
    with_client.load_cert_chain(*certs["client"])
    running = await run_source(oncall_callback.main, args, scheme="https", ssl_context=with_client)
    status, dummy, dummy_headers = await post(running.base + "/cb", XM_RESPONSE, ssl_context=with_client)
    assert status == 202
    without_client = ssl.create_default_context(cafile=certs["ca"])
    with pytest.raises((aiohttp.ClientError, ssl.SSLError, OSError)):
        await post(running.base + "/cb", dict(XM_RESPONSE, eventIdentifier="2"), ssl_context=without_client)
    untrusting = ssl.create_default_context()
    with pytest.raises((aiohttp.ClientError, ssl.SSLError)):
        await post(running.base + "/cb", dict(XM_RESPONSE, eventIdentifier="3"), ssl_context=untrusting)
    assert len(running.events()) == 1


@pytest.mark.parametrize("args, message", [
    ({"port": "eighty"}, "port must be an integer"),
    ({"port": 70000}, "port must be between"),
    ({"hmac_algorithm": "md5"}, "hmac_algorithm must be one of"),
    ({"cafile": "/x.pem"}, "cafile (client certificate verification) needs certfile"),
])
async def test_bad_arguments_fail_before_listening(args, message):
    with pytest.raises(_webhook.ConfigError) as info:
        await oncall_callback.main(asyncio.Queue(), args)
    assert message in str(info.value)


async def test_stopping_the_webhook_cancels_the_work_a_source_left_on_its_loop():
    """A source's own tasks on the webhook's loop (the Dynatrace source's kept notifications) end with it, cancelled,
    instead of being destroyed pending (an asyncio error in the activation's log)."""
    server = _webhook.Webhook(_webhook.WebhookConfig({"host": "127.0.0.1", "port": 0}, "/hook"), asyncio.Queue(1))

    async def handle(payload, deliver):
        return 202, {}

    async def leave_work():
        return asyncio.get_running_loop().create_task(asyncio.sleep(3600))

    await server.start(handle)
    work = await server.run(leave_work())
    server.stop()
    assert work.cancelled()
