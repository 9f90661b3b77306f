# audit-ingest: authentik notification webhook body mapping.
#
# Paste this into Customization > Property Mappings > Create > Webhook Mapping
# (name it "audit-ingest body") and select it as the "Webhook Body Mapping" of
# a "Webhook (generic)" notification transport whose URL is
# https://<audit-ingest>/ingest/authentik/webhook.
#
# It sends the notification's event with exactly the fields, names and
# formats GET /api/v3/events/events/ shows, so an event that arrives both
# pushed and polled is stored once (keyed on its pk). `pk` is converted
# with str(): authentik would otherwise send a bare UUID as 32 hex digits
# without dashes. The datetimes are left to authentik, which writes them as
# the events list does (ISO 8601, UTC, "Z").
event = notification.event
if event is None:
    # A notification without an event (none of the event rules make these)
    # cannot be stored; audit-ingest keeps it as a dead letter.
    return {"body": notification.body, "severity": notification.severity}
return {
    "pk": str(event.pk),
    "user": event.user,
    "action": event.action,
    "app": event.app,
    "context": event.context,
    "client_ip": event.client_ip,
    "created": event.created,
    "expires": event.expires,
    "brand": event.brand,
}
