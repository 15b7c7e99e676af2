# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Slack incident channel: find or create, invite, post once, transcript, archive. Private to the selfheal.devops collection.

The logic of the slack_channel module, shared with the incident orchestrator (incident_sync), which runs it for several
systems at once. Functions take a task object with .params, .check_mode and .warn (an AnsibleModule, or a
_tasks.Task); main() of the module and _tasks.run_task() are the only callers that turn errors into results.
"""

import hashlib
import json
import os
import time

from ansible_collections.selfheal.devops.plugins.module_utils import _options, _tasks, slack
from ansible_collections.selfheal.devops.plugins.module_utils._files import write_atomically
from ansible_collections.selfheal.devops.plugins.module_utils._errors import InvalidInput, SelfHealError


TRANSCRIPT_FOLDER_MODE = 0o700


def message_id_of(params):
    if params["message_id"]:
        return params["message_id"]
    content = json.dumps([params["text"], params["blocks"], params["thread_ts"]], sort_keys=True)
    return hashlib.sha256(content.encode("utf-8")).hexdigest()[:16]


def resolve_users(service, users):
    """Slack ids for ids and e-mail addresses, in order, without repeats; an unknown e-mail fails naming it.

    Returns (ids, looked_up): the ids looked up by e-mail are known to exist, the others are checked by check_ids().
    """
    ids, looked_up = [], set()
    for user in users:
        if not user.strip():
            raise InvalidInput("users: an entry is empty")
        if "@" in user:
            try:
                found = service.lookup_email(user)
            except slack.SlackNotFound:
                raise InvalidInput("no Slack user has the e-mail address %s (users.lookupByEmail: users_not_found); "
                                   "nothing was written" % user)
            if found.get("deleted"):
                raise InvalidInput("the Slack user with the e-mail address %s is deactivated; nothing was written" % user)
            ids.append(found["id"])
            looked_up.add(found["id"])
        else:
            ids.append(user)
    return list(dict.fromkeys(ids)), looked_up


def check_ids(service, ids):
    """Fail, naming them, when some of these user ids do not exist or are deactivated (users.info)."""
    unknown, deactivated = [], []
    for uid in ids:
        try:
            user = service.call("users.info", read=True, user=uid)["user"]
        except slack.SlackNotFound:
            unknown.append(uid)
            continue
        if user.get("deleted"):
            deactivated.append(uid)
    problems = []
    if unknown:
        problems.append("unknown Slack user id(s): %s (users.info: user_not_found)" % ", ".join(unknown))
    if deactivated:
        problems.append("deactivated Slack user(s): %s" % ", ".join(deactivated))
    if problems:
        raise InvalidInput("%s; nothing was written" % "; ".join(problems))


def view(channel):
    if channel is None:
        return None
    return {"id": channel["id"], "name": channel["name"], "is_archived": channel.get("is_archived", False),
            "is_private": channel.get("is_private", False), "topic": (channel.get("topic") or {}).get("value", ""),
            "purpose": (channel.get("purpose") or {}).get("value", "")}


def ensure_present(module, service, name, result, before, after):
    params, check = module.params, module.check_mode
    # Everything is read and checked before the first write: lengths, every e-mail and user id, the channel and
    # its members. A wrong input fails with nothing created; a re-run finds the channel and sends no create.
    for field in ("topic", "purpose"):
        if params[field] is not None and len(params[field]) > 250:
            raise InvalidInput("%s: Slack allows at most 250 characters (got %d)" % (field, len(params[field])))
    wanted_ids, looked_up = resolve_users(service, params["users"])
    channel = service.find_channel(name)
    members = set(service.members(channel["id"])) if channel is not None else set()
    check_ids(service, [uid for uid in wanted_ids if uid not in members and uid not in looked_up])
    if channel is None:
        result["created"] = True
        if not check:
            # name_taken (a channel created meanwhile) is still handled: the channel is found, not created twice.
            channel, result["created"] = service.create_channel(name, params["private"])
            if result["created"]:
                result["written"].append("created channel #%s" % name)
                members = set(filter(None, [channel.get("creator")]))
            else:
                members = set(service.members(channel["id"]))
    if channel is not None and channel.get("is_archived"):
        if not params["unarchive"]:
            raise InvalidInput("Slack channel #%s exists and is archived (unarchive=false)" % name)
        if not check:
            service.call("conversations.unarchive", channel=channel["id"])
            result["written"].append("unarchived #%s" % name)
            channel = service.info(channel["id"])
        else:
            channel = dict(channel, is_archived=False)
        before["is_archived"], after["is_archived"] = True, False
        result["changed"] = True
    if result["created"]:
        result["changed"] = True
        before["channel"], after["channel"] = None, name
    current = view(channel) if channel else {"topic": "", "purpose": ""}
    for field, method in (("topic", "conversations.setTopic"), ("purpose", "conversations.setPurpose")):
        wanted = params[field]
        if wanted is not None and wanted != current[field]:
            before[field], after[field] = current[field], wanted
            result["changed"] = True
            if not check:
                channel = service.call(method, channel=channel["id"], **{field: wanted}).get("channel") or channel
                result["written"].append("set the %s" % field)
                current[field] = wanted
    missing = [uid for uid in wanted_ids if uid not in members]
    if missing:
        result["changed"] = True
        result["invited"] = missing
        after["members_added"] = missing
        if not check:
            service.invite(channel["id"], missing)
            result["written"].append("invited %s" % ", ".join(missing))
    if params["text"] or params["blocks"]:
        post_once(module, service, channel, result, before, after)
    if channel is not None:
        channel = dict(channel, topic={"value": current["topic"]}, purpose={"value": current["purpose"]})
    result["channel"] = view(channel) if channel is not None else None


def post_once(module, service, channel, result, before, after):
    params = module.params
    message_id = message_id_of(params)
    found = None
    if channel is not None and not result["created"]:
        found = service.find_marked(channel["id"], params["incident_key"], message_id, params["thread_ts"])
    if found is not None:
        result["ts"] = found["ts"]
        return
    result["changed"] = result["posted"] = True
    after["message"] = params["text"] or "(blocks)"
    if module.check_mode:
        return
    metadata = {"event_type": slack.MARKER_EVENT_TYPE,
                "event_payload": {"incident_key": params["incident_key"], "message_id": message_id}}
    body = service.call("chat.postMessage", channel=channel["id"], text=params["text"], blocks=params["blocks"],
                        thread_ts=params["thread_ts"], metadata=metadata)
    result["ts"] = body["ts"]
    result["written"].append("posted the message (ts %s)" % body["ts"])


def archive(module, service, name, result, before, after):
    channel = service.find_channel(name)
    result["channel"] = view(channel)
    if channel is None or channel.get("is_archived"):
        return
    before["is_archived"], after["is_archived"] = False, True
    result["changed"] = True
    if not module.check_mode:
        service.call("conversations.archive", channel=channel["id"])
        result["written"].append("archived #%s" % name)
        result["channel"]["is_archived"] = True


def transcript(module, service, name, result):
    params = module.params
    channel = service.find_channel(name)
    if channel is None:
        raise InvalidInput("Slack channel #%s does not exist" % name)
    result["channel"] = view(channel)
    users = {}
    messages = []
    for message in service.transcript(channel["id"]):
        uid = message.get("user") or message.get("bot_id") or ""
        if uid and uid not in users:
            try:
                users[uid] = service.call("users.info", read=True, user=uid)["user"].get("name", uid)
            except slack.SlackError:
                users[uid] = uid
        messages.append({"ts": message["ts"], "user": users.get(uid, uid), "text": message.get("text", ""),
                         "thread_ts": message.get("thread_ts") if message.get("thread_ts") != message["ts"] else None})
    result["transcript"] = messages
    result["message_count"] = len(messages)
    if params["transcript_path"] and not module.check_mode:
        content = render(channel, messages, params["transcript_format"])
        result["path"] = params["transcript_path"]
        if read_text(params["transcript_path"]) != content:
            write_transcript(params["transcript_path"], content, result)
            result["changed"] = True


def read_text(path):
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError):
        return None


def render(channel, messages, form):
    if form == "json":
        return json.dumps({"channel": view(channel), "messages": messages}, indent=2) + "\n"
    lines = ["# Slack transcript of #%s" % channel["name"], ""]
    for message in messages:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(message["ts"])))
        indent = "    " if message["thread_ts"] else ""
        text = message["text"].replace("\n", "\n" + indent + "  ")
        lines.append("%s- `%s` **%s**: %s" % (indent, stamp, message["user"], text))
    return "\n".join(lines) + "\n"


def missing_folders(path):
    """The folders above path that do not exist yet, outermost first."""
    missing = []
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.isdir(folder) and not os.path.lexists(folder) and folder != os.path.dirname(folder):
        missing.insert(0, folder)
        folder = os.path.dirname(folder)
    return missing


def write_transcript(path, content, result):
    """Write the transcript atomically; missing folders above it are created, readable by the owner only."""
    try:
        for folder in missing_folders(path):
            os.mkdir(folder, TRANSCRIPT_FOLDER_MODE)
            os.chmod(folder, TRANSCRIPT_FOLDER_MODE)  # not widened by the umask, not narrowed either
            result["written"].append("created folder %s" % folder)
        write_atomically(path, content)
    except (IOError, OSError) as exc:
        raise InvalidInput("cannot write the transcript to %s: %s" % (path, exc.strerror or exc))
    result["written"].append("wrote %s" % path)


def new_result():
    return {"changed": False, "created": False, "invited": [], "posted": False, "channel": None, "written": []}


def run(module, service, result):
    """Fills result (result["written"] lists every write done, for an honest failure); returns the diff."""
    params = module.params
    name = params["name"] or slack.channel_name(params["incident_key"], params["name_prefix"])
    if not slack.valid_channel_name(name):
        raise InvalidInput("invalid Slack channel name %r: use at most 80 lowercase letters, digits, '-' and '_'" % name)
    before, after = {}, {}
    if params["state"] == "present":
        ensure_present(module, service, name, result, before, after)
    elif params["state"] == "archived":
        archive(module, service, name, result, before, after)
    else:
        transcript(module, service, name, result)
    return {"before": before, "after": after}


failure = _tasks.failure


def argument_spec():
    return _options.argument_spec(
        "slack",
        incident_key=dict(type="str", required=True, no_log=False),
        name=dict(type="str"),
        name_prefix=dict(type="str", default="inc-"),
        state=dict(type="str", choices=["present", "archived", "transcript"], default="present"),
        private=dict(type="bool", default=False),
        unarchive=dict(type="bool", default=True),
        topic=dict(type="str"),
        purpose=dict(type="str"),
        users=dict(type="list", elements="str", default=[]),
        text=dict(type="str"),
        blocks=dict(type="list", elements="dict"),
        thread_ts=dict(type="str"),
        message_id=dict(type="str"),
        transcript_path=dict(type="path"),
        transcript_format=dict(type="str", choices=["markdown", "json"], default="markdown"),
    )


CONSTRAINTS = {}


def execute(task):
    """The module's result (changed, channel, ...); _tasks.Failed when it failed (saying what was written)."""
    result = new_result()
    try:
        service = slack.SlackService(slack.client_from_params(task.params, log=task.warn))
        diff = run(task, service, result)
    except SelfHealError as error:
        raise _tasks.Failed(failure(error, result))
    del result["written"]
    if task._diff:
        result["diff"] = diff
    return result
