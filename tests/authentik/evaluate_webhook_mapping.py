"""Evaluates an authentik webhook mapping the way authentik does, for tests.

Usage: python3 evaluate_webhook_mapping.py MAPPING.py < event.json > body

authentik runs a property mapping's expression as the body of
`def handler(<context names>):` and calls it (authentik/lib/expression/
evaluator.py, `wrap_expression`); a webhook mapping's context is `user`,
`request` (None) and `notification` (NotificationTransport.send_webhook in
authentik/events/models.py). The result goes through `sanitize_item`
(authentik/events/utils.py: a UUID becomes its 32 hex digits, a datetime
ISO 8601 with "+00:00" written "Z") and is sent with
`requests.post(json=...)`, which serialises it with `json.dumps(...,
allow_nan=False)`. This script reproduces those steps for the types an
event carries and prints the exact bytes authentik would POST.

The event on stdin is one item of GET /api/v3/events/events/ (`pk` a dashed
UUID, `created` and `expires` ISO 8601 in UTC); its fields become the
attributes of `notification.event` with the Python types the Event model
has (uuid.UUID, aware datetime, dicts from JSON fields, str).
"""

import json
import sys
import textwrap
import uuid
from datetime import date, datetime, timezone


def sanitize(value):
    if isinstance(value, dict):
        return {key: sanitize(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [new for new in (sanitize(item) for item in value) if new]
    if isinstance(value, uuid.UUID):
        return value.hex
    if isinstance(value, datetime):
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    if isinstance(value, date):
        return value.isoformat()
    return value


def moment(text):
    if text is None:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


class Namespace:
    def __init__(self, **fields):
        self.__dict__.update(fields)


def main():
    expression = open(sys.argv[1], encoding="utf-8").read()
    item = json.load(sys.stdin)
    event = Namespace(
        pk=uuid.UUID(item["pk"]),
        user=item.get("user", {}),
        action=item["action"],
        app=item.get("app", ""),
        context=item.get("context", {}),
        client_ip=item.get("client_ip"),
        created=moment(item.get("created")),
        expires=moment(item.get("expires")),
        brand=item.get("brand", {}),
    )
    recipient = Namespace(username="audit-ingest", email="audit-ingest@example.org")
    notification = Namespace(
        event=event, user=recipient, body="event summary", severity="notice"
    )
    context = {"user": recipient, "request": None, "notification": notification}
    source = "def handler({}):\n{}\nresult = handler({})".format(
        ",".join(context), textwrap.indent(expression, "    "), ",".join(context)
    )
    scope = dict(context)
    exec(compile(source, "webhook-mapping", "exec"), scope)
    body = json.dumps(sanitize(scope["result"]), allow_nan=False)
    sys.stdout.buffer.write(body.encode("utf-8"))


if __name__ == "__main__":
    main()
