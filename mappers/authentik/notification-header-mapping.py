# audit-ingest: authentik notification webhook header mapping.
#
# Paste this into Customization > Property Mappings > Create > Webhook Mapping
# (name it "audit-ingest token") and select it as the "Webhook Header Mapping"
# of the same transport. Replace the value with the token audit-ingest reads
# from AUTHENTIK_WEBHOOK_TOKEN (at least 16 random bytes, for example the
# output of `openssl rand -base64 32`).
return {"Authorization": "Bearer REPLACE-WITH-AUTHENTIK_WEBHOOK_TOKEN"}
