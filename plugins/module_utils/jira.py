# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Jira Cloud (REST v3/v2), Jira Data Center (REST v2) and JSM service layer. Private to selfheal.devops.

Resource verbs on top of the transport (issues, bounded JQL search in both pagination styles, comments,
transitions, attachments, JSM requests), the text converter (plain text / simple Markdown -> ADF for v3 and
wiki markup for v2), the comment marker, and the pure helpers the jira_incident module plans with.
"""

import hashlib
import re

from ansible_collections.selfheal.devops.plugins.module_utils import _http, _options
from ansible_collections.selfheal.devops.plugins.module_utils._errors import InvalidInput, NotFound, UnexpectedResponse

MARKER_COLOR = "#97a0af"
MARKER_PATTERN = re.compile(r"selfheal:([A-Za-z0-9._-]+)")
MAX_FILES_PER_REQUEST = 60
MAX_SEARCH_PAGES = 50
MAX_COMMENT_PAGES = 100
# iter_search: pages of at most 100 issues (Cloud's cap when fields other than id/key are asked for).
SEARCH_PAGE_SIZE = 100
# Seconds to look for an issue whose create answer was lost (Jira's search is eventually consistent).
LOOKUP_SETTLE = 5.0


def client_from_params(params, log=None):
    """The transport for a module's validated parameters: Basic e-mail + API token, or Bearer PAT without user."""
    if params.get("user"):
        auth = _http.basic_auth(params["user"], params["token"])
    else:
        auth = _http.bearer_auth(params["token"])
    return _http.Client(params["url"].rstrip("/"), service="Jira", auth=auth, retry=_options.retry_policy(params),
                        **_options.client_kwargs(params, log))


# --- Markdown subset -> blocks ------------------------------------------------------------------------

_FENCE = re.compile(r"^\s*(```|~~~)\s*([\w+#.-]*)\s*$")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_ITEM = re.compile(r"^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$")
_RULE = re.compile(r"^\s*(?:-\s*){3,}$|^\s*(?:\*\s*){3,}$|^\s*(?:_\s*){3,}$")
_QUOTE = re.compile(r"^\s*>\s?(.*)$")
_INLINE = re.compile(r"`([^`]+)`|\*\*(.+?)\*\*|__(.+?)__|\[([^\]]+)\]\((\S+?)\)|(https?://[^\s<>()\[\]]*[^\s<>()\[\].,;:!?'\"])")


def parse_blocks(text):
    """Split plain text / simple Markdown into blocks: (kind, payload) with kind in paragraph, heading, list,
    code, rule, quote. Paragraph payloads are lists of lines; list payloads are nested item trees."""
    lines = (text or "").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    blocks = []
    index = 0
    while index < len(lines):
        line = lines[index]
        fence = _FENCE.match(line)
        if fence:
            closing = fence.group(1)
            body = []
            index += 1
            while index < len(lines) and lines[index].strip() != closing:
                body.append(lines[index])
                index += 1
            index += 1  # the closing fence (or the end of the text)
            blocks.append(("code", {"language": fence.group(2) or None, "text": "\n".join(body)}))
            continue
        if not line.strip():
            index += 1
            continue
        heading = _HEADING.match(line)
        if heading:
            blocks.append(("heading", {"level": len(heading.group(1)), "text": heading.group(2)}))
            index += 1
            continue
        if _RULE.match(line):
            blocks.append(("rule", None))
            index += 1
            continue
        if _QUOTE.match(line):
            quoted = []
            while index < len(lines) and _QUOTE.match(lines[index]):
                quoted.append(_QUOTE.match(lines[index]).group(1))
                index += 1
            blocks.append(("quote", quoted))
            continue
        if _ITEM.match(line):
            items = []
            while index < len(lines):
                match = _ITEM.match(lines[index])
                if match:
                    items.append([len(match.group(1).expandtabs(4)), not match.group(2)[0] in "-*+", match.group(3),
                                  _start_number(match.group(2))])
                elif lines[index].strip() and items and lines[index][:1] in (" ", "\t"):
                    items[-1][2] += "\n" + lines[index].strip()  # continuation of the item
                else:
                    break
                index += 1
            blocks.append(("list", _list_tree(items)))
            continue
        paragraph = []
        while index < len(lines) and lines[index].strip() and not (
                _FENCE.match(lines[index]) or _HEADING.match(lines[index]) or _ITEM.match(lines[index])
                or _RULE.match(lines[index]) or _QUOTE.match(lines[index])):
            paragraph.append(lines[index].strip())
            index += 1
        blocks.append(("paragraph", paragraph))
    return blocks


def _start_number(marker):
    return int(marker[:-1]) if marker[:-1].isdigit() else 1


def _list_tree(items):
    """Nest flat (indent, ordered, text, start) items into [{"ordered", "start", "items": [{"text", "children"}]}]."""
    def build(position, indent):
        first = items[position]
        node = {"ordered": first[1], "start": first[3], "items": []}
        while position < len(items) and items[position][0] >= indent:
            current = items[position]
            if current[0] > indent and node["items"]:
                child, position = build(position, current[0])
                node["items"][-1]["children"].append(child)
                continue
            node["items"].append({"text": current[2], "children": []})
            position += 1
        return node, position

    lists = []
    position = 0
    while position < len(items):
        node, position = build(position, items[position][0])
        lists.append(node)
    return lists


def parse_inline(text):
    """Inline Markdown -> spans (text, marks): `code`, **bold** / __bold__, [text](url) and bare URLs."""
    spans = []
    position = 0
    for match in _INLINE.finditer(text):
        if match.start() > position:
            spans.append((text[position:match.start()], ()))
        code, bold, bold2, label, href, url = match.groups()
        if code is not None:
            spans.append((code, (("code", None),)))
        elif bold is not None or bold2 is not None:
            for inner, marks in parse_inline(bold if bold is not None else bold2):
                spans.append((inner, (("strong", None),) + tuple(m for m in marks if m[0] != "strong")))
        elif label is not None:
            for inner, marks in parse_inline(label):
                spans.append((inner, tuple(m for m in marks if m[0] != "link") + (("link", href),)))
        else:
            spans.append((url, (("link", url),)))
        position = match.end()
    if position < len(text):
        spans.append((text[position:], ()))
    merged = []
    for span in spans:
        if not span[0]:
            continue
        if merged and merged[-1][1] == span[1]:
            merged[-1] = (merged[-1][0] + span[0], span[1])
        else:
            merged.append(span)
    return merged


# --- blocks -> ADF -------------------------------------------------------------------------------------

def _adf_marks(marks):
    out = []
    for kind, value in marks:
        if kind == "link":
            out.append({"type": "link", "attrs": {"href": value}})
        else:
            out.append({"type": kind})
    if any(m["type"] == "code" for m in out):  # ADF allows code only together with link
        out = [m for m in out if m["type"] in ("code", "link")]
    return out


def _adf_inline(lines):
    nodes = []
    for number, line in enumerate(lines):
        if number:
            nodes.append({"type": "hardBreak"})
        for text, marks in parse_inline(line):
            node = {"type": "text", "text": text}
            adf_marks = _adf_marks(marks)
            if adf_marks:
                node["marks"] = adf_marks
            nodes.append(node)
    return nodes


def _adf_paragraph(lines):
    content = _adf_inline(lines)
    return {"type": "paragraph", "content": content} if content else {"type": "paragraph"}


def _adf_list(node):
    items = []
    for item in node["items"]:
        content = [_adf_paragraph(item["text"].split("\n"))]
        content.extend(_adf_list(child) for child in item["children"])
        items.append({"type": "listItem", "content": content})
    if node["ordered"]:
        return {"type": "orderedList", "attrs": {"order": node["start"]}, "content": items}
    return {"type": "bulletList", "content": items}


def markdown_to_adf(text):
    """Plain text or simple Markdown -> an Atlassian Document Format document (REST v3 rich text)."""
    content = []
    for kind, payload in parse_blocks(text):
        if kind == "paragraph":
            content.append(_adf_paragraph(payload))
        elif kind == "heading":
            content.append({"type": "heading", "attrs": {"level": payload["level"]}, "content": _adf_inline([payload["text"]])})
        elif kind == "list":
            content.extend(_adf_list(node) for node in payload)
        elif kind == "code":
            block = {"type": "codeBlock"}
            if payload["language"]:
                block["attrs"] = {"language": payload["language"]}
            block["content"] = [{"type": "text", "text": payload["text"]}] if payload["text"] else []
            content.append(block)
        elif kind == "rule":
            content.append({"type": "rule"})
        elif kind == "quote":
            paragraphs = [p for k, p in parse_blocks("\n".join(payload)) if k == "paragraph"]
            content.append({"type": "blockquote", "content": [_adf_paragraph(p) for p in paragraphs] or [{"type": "paragraph"}]})
    return {"type": "doc", "version": 1, "content": content}


# --- blocks -> wiki markup -------------------------------------------------------------------------------

_WIKI_ALWAYS = set("{}[]|!\\")
_WIKI_EDGE = set("*_+^~-?")


def wiki_escape(text, line_start=True):
    """Escape characters that wiki markup would read as formatting (edge characters only at word edges)."""
    out = []
    for position, char in enumerate(text):
        before = text[position - 1] if position else ""
        after = text[position + 1] if position + 1 < len(text) else ""
        if char in _WIKI_ALWAYS:
            out.append("\\" + char)
        elif char in _WIKI_EDGE and not (before.isalnum() and after.isalnum()):
            out.append("\\" + char)
        else:
            out.append(char)
    escaped = "".join(out)
    if line_start and re.match(r"^(#|h[1-6]\.|bq\.)", escaped):
        escaped = "\\" + escaped
    return escaped


def _wiki_inline(line):
    out = []
    for text, marks in parse_inline(line):
        kinds = dict(marks)
        if "code" in kinds:
            rendered = "{{%s}}" % text.replace("}}", "} }")
        else:
            rendered = wiki_escape(text, line_start=not out)
            if "strong" in kinds:
                rendered = "*%s*" % rendered
        if "link" in kinds:
            if text == kinds["link"] and "strong" not in kinds and "code" not in kinds:
                rendered = "[%s]" % kinds["link"]
            else:
                rendered = "[%s|%s]" % (rendered, kinds["link"])
        out.append(rendered)
    return "".join(out)


def _wiki_list(node, prefix=""):
    lines = []
    bullet = prefix + ("#" if node["ordered"] else "*")
    for item in node["items"]:
        text_lines = item["text"].split("\n")
        lines.append("%s %s" % (bullet, _wiki_inline(text_lines[0])))
        lines.extend(_wiki_inline(extra) for extra in text_lines[1:])
        for child in item["children"]:
            lines.extend(_wiki_list(child, bullet))
    return lines


def markdown_to_wiki(text):
    """Plain text or simple Markdown -> Jira wiki markup (REST v2 rich text, Cloud and Data Center)."""
    out = []
    for kind, payload in parse_blocks(text):
        if kind == "paragraph":
            out.append("\n".join(_wiki_inline(line) for line in payload))
        elif kind == "heading":
            out.append("h%d. %s" % (payload["level"], _wiki_inline(payload["text"])))
        elif kind == "list":
            out.append("\n".join(line for node in payload for line in _wiki_list(node)))
        elif kind == "code":
            opener = "{code:%s}" % payload["language"] if payload["language"] else "{code}"
            out.append("%s\n%s\n{code}" % (opener, payload["text"]))
        elif kind == "rule":
            out.append("----")
        elif kind == "quote":
            out.append("{quote}\n%s\n{quote}" % "\n".join(_wiki_inline(line) for line in payload if line.strip()))
    return "\n\n".join(out)


def render(text, api_version):
    """Rich text for the API version: ADF for v3, wiki markup for v2."""
    return markdown_to_adf(text) if str(api_version) == "3" else markdown_to_wiki(text)


# --- reading rich text back ----------------------------------------------------------------------------------

def adf_to_text(node):
    """Plain text of an ADF document or node (blocks separated by newlines); strings pass through."""
    if node is None:
        return ""
    if isinstance(node, str):
        return node
    if not isinstance(node, dict):
        return str(node)
    kind = node.get("type")
    if kind == "text":
        return node.get("text", "")
    if kind == "hardBreak":
        return "\n"
    children = [adf_to_text(child) for child in node.get("content") or []]
    if kind in ("doc", "bulletList", "orderedList", "listItem", "blockquote", "panel", "expand", "tableRow", "table"):
        return "\n".join(child for child in children if child != "")
    return "".join(children)


def normalize_adf(node):
    """ADF with what Jira may add or drop on its own removed (localId, empty attrs, orderedList order 1)."""
    if isinstance(node, list):
        return [normalize_adf(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "attrs":
            attrs = dict((k, v) for k, v in (value or {}).items() if k != "localId" and v is not None)
            if node.get("type") == "orderedList" and attrs.get("order") == 1:
                attrs.pop("order")
            if attrs:
                out["attrs"] = attrs
        elif key == "content" and node.get("type") not in ("doc",) and value == []:
            continue
        elif key == "marks" and not value:
            continue
        else:
            out[key] = normalize_adf(value)
    return out


def same_rich_text(current, desired):
    """Whether a stored rich-text value equals the desired one (ADF compared normalised, wiki modulo trailing space)."""
    if isinstance(desired, dict):
        return isinstance(current, dict) and normalize_adf(current) == normalize_adf(desired)
    if isinstance(current, dict):
        return False
    return (current or "").rstrip() == (desired or "").rstrip()


# --- comment marker --------------------------------------------------------------------------------------------

def marker_id(comment, comment_id=None):
    """The id in a comment's marker: the caller's comment_id, else a hash of the comment text."""
    if comment_id:
        return re.sub(r"[^A-Za-z0-9._-]", "-", comment_id)
    return hashlib.sha256((comment or "").encode("utf-8")).hexdigest()[:12]


def comment_body(text, marker, api_version):
    """The comment as the API version wants it, ending with the marker line `[selfheal:<id>]` in grey."""
    token = "selfheal:%s" % marker
    if str(api_version) == "3":
        doc = markdown_to_adf(text)
        doc["content"].append({"type": "paragraph", "content": [{
            "type": "text", "text": "[%s]" % token, "marks": [{"type": "textColor", "attrs": {"color": MARKER_COLOR}}]}]})
        return doc
    wiki = markdown_to_wiki(text)
    return "%s\n\n{color:%s}\\[%s\\]{color}" % (wiki, MARKER_COLOR, token) if wiki else "{color:%s}\\[%s\\]{color}" % (
        MARKER_COLOR, token)


def markers_in(body):
    """The marker ids found in a comment body (ADF or string)."""
    return set(MARKER_PATTERN.findall(adf_to_text(body)))


def jql_quote(value):
    return '"%s"' % str(value).replace("\\", "\\\\").replace('"', '\\"')


# --- transitions ---------------------------------------------------------------------------------------------

def describe_transitions(transitions):
    available = [t for t in transitions if t.get("isAvailable", True) is not False]
    if not available:
        return "none"
    return ", ".join("'%s' (-> %s)" % (t.get("name"), (t.get("to") or {}).get("name")) for t in available)


def _to(transition, what="name"):
    target = transition.get("to") or {}
    if what == "category":
        return ((target.get("statusCategory") or {}).get("key") or "").lower()
    return (target.get("name") or "").lower()


def plan_transition(transitions, current, status=None, transition=None, resolved=False, current_category=None):
    """The transition to run, or None when the issue is already where it should be.

    current is the issue's status name (current_category its category key: new, indeterminate, done).
    Targets: `status` (an exact status name), else with `resolved` any status of the done category (a
    transition to "Resolved" or "Done" preferred), else the target of the named `transition`.
    transitions is what GET .../transitions returned; unavailable ones (Jira Cloud lists them on request)
    carry isAvailable false. Raises InvalidInput naming the available transitions when none fits.
    """
    current_lower = (current or "").lower()
    if status and current_lower == status.lower():
        return None
    if resolved and not status and (current_category or "").lower() == "done":
        return None
    available = [t for t in transitions if t.get("isAvailable", True) is not False]
    listing = "Available from '%s': %s" % (current, describe_transitions(transitions))
    if transition:
        named = [t for t in transitions if (t.get("name") or "").lower() == transition.lower()]
        usable = [t for t in named if t in available]
        if usable:
            chosen = usable[0]
            if status and _to(chosen) != status.lower():
                raise InvalidInput("Transition '%s' leads to status '%s', not '%s'. %s" % (
                    transition, chosen["to"].get("name"), status, listing))
            if resolved and not status and _to(chosen, "category") not in ("", "done"):
                raise InvalidInput("Transition '%s' leads to status '%s', which does not resolve the issue. %s" % (
                    transition, chosen["to"].get("name"), listing))
            return chosen
        if named and not status and not resolved and _to(named[0]) == current_lower:
            return None
        reason = "is not available from status '%s'" % current if named else "does not exist for this issue"
        hint = "" if (status or resolved) else " (set status so that a re-run can tell the issue is already there)"
        raise InvalidInput("Transition '%s' %s%s. %s" % (transition, reason, hint, listing))
    if status:
        candidates = [t for t in available if _to(t) == status.lower()]
    else:
        candidates = [t for t in available if _to(t, "category") == "done"]
        candidates.sort(key=lambda t: 0 if _to(t) in ("resolved", "done") else 1)
    if candidates:
        return candidates[0]
    wanted = "status '%s'" % status if status else "a resolved (done) status"
    raise InvalidInput("No transition from status '%s' leads to %s. %s" % (current, wanted, listing))


# --- issue fields: current vs desired --------------------------------------------------------------------------

def is_superset(current, desired):
    """Whether `current` contains everything `desired` asks for (dicts recursively, lists order-insensitive)."""
    if isinstance(desired, dict):
        return isinstance(current, dict) and all(k in current and is_superset(current[k], v) for k, v in desired.items())
    if isinstance(desired, list):
        return isinstance(current, list) and len(current) == len(desired) and all(
            any(is_superset(c, d) for c in current) for d in desired)
    if isinstance(desired, bool) or isinstance(current, bool):
        return current is desired
    if isinstance(desired, (int, float)) and isinstance(current, (int, float)):
        return float(current) == float(desired)
    return current == desired


def readable(field_id, value):
    """A field value as a person reads it in a diff."""
    if value is None:
        return None
    if field_id in ("priority", "status", "resolution", "issuetype"):
        return value.get("name") if isinstance(value, dict) else value
    if field_id == "components":
        return [c.get("name") if isinstance(c, dict) else c for c in value]
    if isinstance(value, dict) and value.get("type") == "doc":
        return adf_to_text(value)
    if isinstance(value, dict) and "value" in value:
        return value["value"]
    return value


def plan_field_changes(current, desired):
    """Compare an issue's current fields with the desired ones.

    desired maps field ids to API values, except labels and components, which are lists of names that must be
    present (others on the issue are kept). Returns (payload for PUT fields, before, after) with readable values
    of the changed fields only.
    """
    payload, before, after = {}, {}, {}
    for field_id, wanted in desired.items():
        have = current.get(field_id)
        if field_id == "labels":
            have = list(have or [])
            missing = [label for label in wanted if label not in have]
            if missing:
                payload["labels"] = have + missing
                before["labels"], after["labels"] = have, have + missing
            continue
        if field_id == "components":
            names = [c.get("name") for c in have or []]
            missing = [name for name in wanted if name not in names]
            if missing:
                payload["components"] = [{"name": n} for n in names + missing]
                before["components"], after["components"] = names, names + missing
            continue
        if field_id == "priority":
            same = (have or {}).get("name") == wanted.get("name")
        elif field_id == "description" or (isinstance(wanted, dict) and wanted.get("type") == "doc"):
            same = same_rich_text(have, wanted)
        else:
            same = is_superset(have, wanted)
        if not same:
            payload[field_id] = wanted
            before[field_id], after[field_id] = readable(field_id, have), readable(field_id, wanted)
    return payload, before, after


def issue_summary(issue, browse_url):
    """The compact view of an issue the module returns."""
    fields = issue.get("fields") or {}
    return {
        "key": issue.get("key"), "id": issue.get("id"), "url": browse_url,
        "summary": fields.get("summary"),
        "status": (fields.get("status") or {}).get("name"),
        "resolution": (fields.get("resolution") or {}).get("name"),
        "priority": (fields.get("priority") or {}).get("name"),
        "labels": fields.get("labels") or [],
        "components": [c.get("name") for c in fields.get("components") or []],
        "attachments": [{"filename": a.get("filename"), "size": a.get("size")} for a in fields.get("attachment") or []],
    }


# --- the service -----------------------------------------------------------------------------------------------

class JiraService(object):
    """Issues, search, comments, transitions, attachments and JSM requests of one Jira site."""

    def __init__(self, client, api_version="3", deployment=None):
        self.client = client
        self.version = str(api_version)
        # Cloud speaks the enhanced search (/search/jql); Data Center only the paginated /search. A PAT without a
        # user on REST v2 means Data Center; a wrong guess is corrected once from the 404 / 410 it causes.
        self.deployment = deployment or "cloud"
        self._fields = None

    def api(self, path):
        return "/rest/api/%s%s" % (self.version, path)

    def browse_url(self, key):
        return "%s/browse/%s" % (self.client.base_url, key) if key else None

    def rich(self, text):
        return render(text, self.version)

    # Issues --------------------------------------------------------------------------------------------------
    def get_issue(self, key, fields=None):
        params = {"fields": ",".join(fields)} if fields else None
        try:
            return self.client.get(self.api("/issue/%s" % key), params=params).json
        except NotFound:
            raise NotFound("Jira issue %s does not exist or this account cannot see it" % key, status=404)

    def create_issue(self, fields):
        """Create an issue. One whose answer was lost (502/504, dropped, timeout) is looked for by all its labels in
        its project (the collection labels each issue with its incident key), for a few seconds since Jira's search is
        eventually consistent, and is never sent again: at most one issue results."""
        labels, project = fields.get("labels") or [], (fields.get("project") or {}).get("key")

        def lookup():
            if not (labels and project):
                return None
            clauses = ["project = %s" % jql_quote(project)] + ["labels = %s" % jql_quote(label) for label in labels]
            found = self.search("%s ORDER BY created ASC" % " AND ".join(clauses), fields=("key",), limit=1)
            return {"id": found[0].get("id"), "key": found[0]["key"]} if found else None
        return _http.write_once(self.client, lambda: self.client.post(self.api("/issue"), json_body={"fields": fields}, expected=(201,)).json,
                                lookup, "Jira issue", "labelled %s in %s" % (", ".join(labels) or "(no label)", project),
                                settle=LOOKUP_SETTLE, interval=1.0)

    def update_issue(self, key, fields):
        self.client.put(self.api("/issue/%s" % key), json_body={"fields": fields}, expected=(204,))

    def field_list(self):
        if self._fields is None:
            self._fields = self.client.get(self.api("/field")).json or []
        return self._fields

    # Search --------------------------------------------------------------------------------------------------
    def search(self, jql, fields=("key",), limit=1000):
        """Every issue the (bounded) JQL selects, up to `limit`, in both pagination styles."""
        for dummy in range(2):
            try:
                if self.deployment == "dc":
                    return self._search_legacy(jql, fields, limit)
                return self._search_jql(jql, fields, limit)
            except NotFound:
                if self.deployment == "dc":
                    raise
                self.deployment = "dc"  # no /search/jql: Data Center
            except UnexpectedResponse as error:
                if error.status != 410 or self.deployment != "dc":
                    raise
                self.deployment = "cloud"  # /search is gone: Cloud
        raise UnexpectedResponse("Jira search is not available at %s" % self.client.base_url)

    def _search_jql(self, jql, fields, limit):
        params = {"jql": jql, "fields": ",".join(fields), "maxResults": str(min(limit, 100))}
        issues = []
        for dummy in range(MAX_SEARCH_PAGES):
            page = self.client.get(self.api("/search/jql"), params=params).json or {}
            issues.extend(page.get("issues") or [])
            token = page.get("nextPageToken")
            if page.get("isLast", not token) or not token or len(issues) >= limit:
                return issues[:limit]
            params = dict(params, nextPageToken=token)
        return issues[:limit]

    def _search_legacy(self, jql, fields, limit):
        start = 0
        issues = []
        for dummy in range(MAX_SEARCH_PAGES):
            page = self.client.get(self.api("/search"), params={
                "jql": jql, "startAt": str(start), "maxResults": str(min(limit, 100)), "fields": ",".join(fields)}).json or {}
            batch = page.get("issues") or []
            issues.extend(batch)
            start += len(batch)
            if not batch or start >= int(page.get("total", 0)) or len(issues) >= limit:
                return issues[:limit]
        return issues[:limit]

    def iter_search(self, jql, fields=("key",), max_issues=100000, page_size=SEARCH_PAGE_SIZE):
        """Every issue the (bounded) JQL selects, page by page, in both pagination styles, as a generator: thousands
        of issues are never all in memory at once. Stops after max_issues (a bound, so a run away query ends)."""
        pages = max(1, -(-int(max_issues) // int(page_size)) + 1)
        for dummy in range(2):
            try:
                if self.deployment == "dc":
                    source = self._pages_legacy(jql, fields, page_size, pages)
                else:
                    source = self._pages_jql(jql, fields, page_size, pages)
                first = next(source, None)
                break
            except NotFound:
                if self.deployment == "dc":
                    raise
                self.deployment = "dc"
            except UnexpectedResponse as error:
                if error.status != 410 or self.deployment != "dc":
                    raise
                self.deployment = "cloud"
        else:
            raise UnexpectedResponse("Jira search is not available at %s" % self.client.base_url)
        count = 0
        page = first
        while page is not None:
            for issue in page:
                if count >= max_issues:
                    return
                count += 1
                yield issue
            page = next(source, None)

    def _pages_jql(self, jql, fields, page_size, pages):
        params = {"jql": jql, "fields": ",".join(fields), "maxResults": str(page_size)}
        for dummy in range(pages):
            page = self.client.get(self.api("/search/jql"), params=params).json or {}
            yield page.get("issues") or []
            token = page.get("nextPageToken")
            if page.get("isLast", not token) or not token:
                return
            params = dict(params, nextPageToken=token)

    def _pages_legacy(self, jql, fields, page_size, pages):
        start = 0
        for dummy in range(pages):
            page = self.client.get(self.api("/search"), params={
                "jql": jql, "startAt": str(start), "maxResults": str(page_size), "fields": ",".join(fields)}).json or {}
            batch = page.get("issues") or []
            yield batch
            start += len(batch)
            if not batch or start >= int(page.get("total", 0)):
                return

    def find_by_label(self, label, project=None):
        """Issues carrying the label (in the project, when given), oldest first."""
        clauses = ["labels = %s" % jql_quote(label)]
        if project:
            clauses.insert(0, "project = %s" % jql_quote(project))
        return self.search("%s ORDER BY created ASC" % " AND ".join(clauses), fields=("key", "created"))

    # Comments ------------------------------------------------------------------------------------------------
    def comments(self, key):
        start, found = 0, []
        for dummy in range(MAX_COMMENT_PAGES):
            page = self.client.get(self.api("/issue/%s/comment" % key), params={
                "startAt": str(start), "maxResults": "100", "orderBy": "created"}).json or {}
            batch = page.get("comments") or []
            found.extend(batch)
            start += len(batch)
            if not batch or start >= int(page.get("total", 0)):
                break
        return found

    def add_comment(self, key, body, internal=False):
        """Add a comment. One whose answer was lost is looked for by its marker among the issue's comments before
        it is sent once more (an unmarked comment is not: AmbiguousWrite)."""
        payload = {"body": body}
        if internal:
            payload["properties"] = [{"key": "sd.public.comment", "value": {"internal": True}}]
        marks = markers_in(body)

        def lookup():
            return next((c for c in self.comments(key) if marks <= markers_in(c.get("body"))), None) if marks else None
        return _http.write_once(self.client, lambda: self.client.post(self.api("/issue/%s/comment" % key), json_body=payload,
                                                                      expected=(201,)).json,
                                lookup, "comment", "marked selfheal:%s on %s" % (",".join(sorted(marks)), key),
                                resend=bool(marks))

    # Transitions ---------------------------------------------------------------------------------------------
    def transitions(self, key, include_unavailable=False):
        params = {"expand": "transitions.fields"}
        if include_unavailable:
            params["includeUnavailableTransitions"] = "true"
        return (self.client.get(self.api("/issue/%s/transitions" % key), params=params).json or {}).get("transitions") or []

    def transition(self, key, transition_id, fields=None, comment=None):
        payload = {"transition": {"id": str(transition_id)}}
        if fields:
            payload["fields"] = fields
        if comment is not None:
            payload["update"] = {"comment": [{"add": {"body": comment}}]}
        self.client.post(self.api("/issue/%s/transitions" % key), json_body=payload, expected=(204,))

    # Attachments ---------------------------------------------------------------------------------------------
    def add_attachments(self, key, files):
        """Upload (name, bytes, mime) tuples, at most 60 per request; returns the attachment objects."""
        added = []
        for start in range(0, len(files), MAX_FILES_PER_REQUEST):
            chunk = [("file", item) for item in files[start:start + MAX_FILES_PER_REQUEST]]
            # A re-sent request re-sends the bytes: the parts are in memory, not open files. One whose answer was lost
            # is looked for (every file's name and size among the issue's attachments) before it is sent once more.
            added.extend(_http.write_once(
                self.client, lambda chunk=chunk: self.client.post(self.api("/issue/%s/attachments" % key), files=chunk,
                                                                  headers={"X-Atlassian-Token": "no-check"}).json or [],
                lambda chunk=chunk: self._attached(key, chunk), "attachments",
                "%s on %s" % (", ".join(item[1][0] for item in chunk), key), resend=True))
        return added

    def _attached(self, key, chunk):
        have = (self.get_issue(key, fields=("attachment",)).get("fields") or {}).get("attachment") or []
        found = []
        for dummy, (name, content, dummy2) in chunk:
            match = next((a for a in have if a.get("filename") == name and int(a.get("size") or -1) == len(content)), None)
            if match is None:
                return None
            found.append(match)
        return found

    def attachment_content(self, attachment_id):
        """The bytes of an attachment (GET .../attachment/content/{id}; Jira Cloud may redirect to its media store,
        which the transport follows)."""
        return self.client.get(self.api("/attachment/content/%s" % attachment_id), headers={"Accept": "*/*"}).content

    # Issue links ---------------------------------------------------------------------------------------------
    def link_types(self):
        return (self.client.get(self.api("/issueLinkType")).json or {}).get("issueLinkTypes") or []

    def link_type(self, name):
        """The link type by name (case-insensitive), or InvalidInput naming the ones that exist."""
        types = self.link_types()
        found = next((t for t in types if (t.get("name") or "").lower() == str(name).lower()), None)
        if found is None:
            raise InvalidInput("Jira has no issue link type '%s'; it has: %s" % (name, ", ".join(t.get("name") or "" for t in types)))
        return found

    def link(self, type_name, inward_key, outward_key):
        """Link two issues: '<inward_key> <outward verb> <outward_key>' (for Problem/Incident: the problem 'causes'
        the incident). 201 without a body."""
        self.client.post(self.api("/issueLink"), json_body={
            "type": {"name": type_name}, "inwardIssue": {"key": inward_key}, "outwardIssue": {"key": outward_key}},
            expected=(200, 201))

    def unlink(self, link_id):
        self.client.delete(self.api("/issueLink/%s" % link_id), expected=(204,))

    # Jira Service Management ---------------------------------------------------------------------------------
    def create_request(self, service_desk_id, request_type_id, values):
        """Create a JSM request. One whose answer was lost is looked for (an issue with exactly this summary created in
        the last 15 minutes; the request carries no label yet) for a few seconds, and never sent again."""
        body = {"serviceDeskId": str(service_desk_id), "requestTypeId": str(request_type_id),
                "requestFieldValues": values}
        summary = values.get("summary") or ""

        def lookup():
            if not summary:
                return None
            found = self.search("summary ~ %s AND created >= -15m ORDER BY created DESC" % jql_quote(summary),
                                fields=("summary",), limit=20)
            same = [i for i in found if ((i.get("fields") or {}).get("summary") or "") == summary]
            return {"issueId": same[0].get("id"), "issueKey": same[0]["key"]} if same else None
        return _http.write_once(self.client, lambda: self.client.post("/rest/servicedeskapi/request", json_body=body, expected=(201,)).json,
                                lookup, "JSM request", "with the summary %r" % summary, settle=LOOKUP_SETTLE, interval=1.0)


def issue_links(issue):
    """An issue's links as [{id, type, direction, key}] where direction is 'outward' when this issue is the link's
    inward end (it <outward verb> key, e.g. a problem 'causes' key) and 'inward' otherwise."""
    links = []
    for link in (issue.get("fields") or {}).get("issuelinks") or []:
        kind = (link.get("type") or {}).get("name")
        if link.get("outwardIssue"):
            links.append({"id": link.get("id"), "type": kind, "direction": "outward", "key": link["outwardIssue"].get("key")})
        elif link.get("inwardIssue"):
            links.append({"id": link.get("id"), "type": kind, "direction": "inward", "key": link["inwardIssue"].get("key")})
    return links


def resolve_custom_fields(custom_fields, field_list, api_version):
    """Map names to ids (`Severity` -> customfield_10060); multi-line text strings become ADF (v3) or wiki (v2)."""
    by_id = dict((f.get("id"), f) for f in field_list)
    by_name = {}
    for item in field_list:
        by_name.setdefault((item.get("name") or "").lower(), []).append(item)
    resolved = {}
    for name, value in custom_fields.items():
        field = by_id.get(name)
        if field is None:
            matches = by_name.get(str(name).lower(), [])
            if len(matches) != 1:
                reason = "no field" if not matches else "%d fields" % len(matches)
                raise InvalidInput("custom_fields: %s is named '%s' in Jira; use the field id (customfield_NNNNN)" % (
                    reason, name))
            field = matches[0]
        schema = field.get("schema") or {}
        if isinstance(value, str) and schema.get("custom") == "com.atlassian.jira.plugin.system.customfieldtypes:textarea":
            value = render(value, api_version)
        resolved[field["id"]] = value
    return resolved
