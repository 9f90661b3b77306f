//! How records become MongoDB documents and back: the queryable BSON
//! fields in the platform's camelCase schema, beside the original's exact
//! text and the microsecond times (`metadataJson`, `atMicros`,
//! `receivedAtMicros`), which reads return so that `/audit` answers byte for
//! byte as the embedded store does.

use chrono::{DateTime, Utc};
use mongodb::bson::{self, Bson, Document, doc};
use serde_json::Value;

use crate::event::RawJson;
use crate::store::{NewRecord, Record, StoreError};

pub(super) fn opt(v: &Option<String>) -> Bson {
    v.as_ref().map_or(Bson::Null, |s| Bson::String(s.clone()))
}

pub(super) fn record_to_doc(r: &NewRecord) -> Document {
    doc! {
        "source": &r.source,
        "action": &r.action,
        "at": bson::DateTime::from_chrono(r.at),
        "receivedAt": bson::DateTime::from_chrono(r.received_at),
        "actorId": opt(&r.actor_id),
        "actorName": opt(&r.actor_name),
        "actorEmail": opt(&r.actor_email),
        "ip": opt(&r.ip),
        "targetType": opt(&r.target_type),
        "targetId": opt(&r.target_id),
        "targetName": opt(&r.target_name),
        "tenantSlug": opt(&r.tenant_slug),
        "outcome": &r.outcome,
        "externalId": opt(&r.external_id),
        "metadata": json_to_bson(&r.metadata.parse()),
        // The original as received, byte for byte: BSON reorders no keys but
        // has no integer above i64::MAX and no room for every number's
        // spelling, so `metadata` serves queries and this serves reads.
        "metadataJson": r.metadata.get(),
        // BSON dates hold milliseconds; the embedded store keeps microseconds.
        "atMicros": crate::store::micros(&r.at),
        "receivedAtMicros": crate::store::micros(&r.received_at),
        "mapper": opt(&r.mapper),
        "unrecognised": r.unrecognised,
    }
}

/// A time in microseconds kept beside its BSON date, when the two agree
/// (a document another version or program wrote may have only the date).
fn exact_time(d: &Document, date: DateTime<Utc>, micros_key: &str) -> DateTime<Utc> {
    match d.get_i64(micros_key) {
        Ok(us) if us.div_euclid(1000) == date.timestamp_millis() => DateTime::from_timestamp_micros(us).unwrap_or(date),
        _ => date,
    }
}

/// JSON to BSON without ever passing an integer through `f64`: integers that
/// fit `i64` become Int64, larger ones keep every digit as a string.
fn json_to_bson(v: &Value) -> Bson {
    match v {
        Value::Null => Bson::Null,
        Value::Bool(b) => Bson::Boolean(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Bson::Int64(i),
            (None, Some(u), _) => Bson::String(u.to_string()),
            (_, _, Some(f)) => Bson::Double(f),
            _ => Bson::String(n.to_string()),
        },
        Value::String(s) => Bson::String(s.clone()),
        Value::Array(a) => Bson::Array(a.iter().map(json_to_bson).collect()),
        Value::Object(o) => Bson::Document(o.iter().map(|(k, v)| (k.clone(), json_to_bson(v))).collect()),
    }
}

fn bson_to_json(b: &Bson) -> Value {
    match b {
        Bson::Int32(i) => Value::from(*i),
        Bson::Int64(i) => Value::from(*i),
        Bson::Double(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Bson::String(s) => Value::String(s.clone()),
        Bson::Boolean(x) => Value::Bool(*x),
        Bson::Array(a) => Value::Array(a.iter().map(bson_to_json).collect()),
        Bson::Document(d) => Value::Object(d.iter().map(|(k, v)| (k.clone(), bson_to_json(v))).collect()),
        Bson::DateTime(dt) => Value::String(dt.to_chrono().to_rfc3339()),
        Bson::ObjectId(o) => Value::String(o.to_hex()),
        Bson::Null => Value::Null,
        other => Value::String(other.to_string()),
    }
}

pub(super) fn doc_to_record(d: &Document) -> Result<Record, StoreError> {
    let corrupt = |what: &str| StoreError::corrupt(format!("audit event without a valid {what}"));
    let text = |k: &str| d.get_str(k).ok().map(str::to_string);
    let time = |k: &str| d.get_datetime(k).map(|t| t.to_chrono()).map_err(|_| corrupt(k));
    Ok(Record {
        id: d.get_object_id("_id").map_err(|_| corrupt("_id"))?.to_hex(),
        record: NewRecord {
            source: text("source").ok_or_else(|| corrupt("source"))?,
            action: text("action").ok_or_else(|| corrupt("action"))?,
            at: exact_time(d, time("at")?, "atMicros"),
            received_at: match time("receivedAt") {
                Ok(t) => exact_time(d, t, "receivedAtMicros"),
                Err(_) => time("at")?,
            },
            actor_id: text("actorId"),
            actor_name: text("actorName"),
            actor_email: text("actorEmail"),
            ip: text("ip"),
            target_type: text("targetType"),
            target_id: text("targetId"),
            target_name: text("targetName"),
            tenant_slug: text("tenantSlug"),
            outcome: text("outcome").unwrap_or_else(|| "unknown".into()),
            external_id: text("externalId"),
            metadata: match d
                .get_str("metadataJson")
                .ok()
                .map(|t| RawJson::from_text(t.to_string()))
            {
                Some(Ok(raw)) => raw,
                _ => RawJson::from_value(&d.get("metadata").map_or(Value::Null, bson_to_json)),
            },
            mapper: text("mapper"),
            unrecognised: d
                .get_bool("unrecognised")
                .or_else(|_| d.get_document("metadata").and_then(|m| m.get_bool("unrecognised")))
                .unwrap_or(false),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::oid::ObjectId;

    fn stored(r: &NewRecord) -> Record {
        let mut d = record_to_doc(r);
        d.insert("_id", ObjectId::new());
        doc_to_record(&d).unwrap()
    }

    #[test]
    fn originals_and_times_come_back_exactly_as_written() {
        let original = r#"{"z":1,"id":18446744073709551615,"big":123456789012345678901234567890,"f":1.50,"a":"x"}"#;
        let at = DateTime::from_timestamp_micros(1_750_000_000_123_456).unwrap();
        let record = NewRecord {
            source: "stalwart".into(),
            action: "stalwart.auth_failed".into(),
            at,
            received_at: at,
            actor_id: None,
            actor_name: None,
            actor_email: None,
            ip: None,
            target_type: None,
            target_id: None,
            target_name: None,
            tenant_slug: None,
            outcome: "failure".into(),
            external_id: None,
            metadata: RawJson::from_text(original.to_string()).unwrap(),
            mapper: None,
            unrecognised: false,
        };
        let back = stored(&record).record;
        assert_eq!(back.metadata.get(), original, "byte for byte");
        assert_eq!(back.at, at, "microseconds kept");
        assert_eq!(back.received_at, at);

        // A document written before these fields existed still reads.
        let mut old = record_to_doc(&record);
        for key in ["metadataJson", "atMicros", "receivedAtMicros"] {
            old.remove(key);
        }
        old.insert("_id", ObjectId::new());
        let back = doc_to_record(&old).unwrap().record;
        assert_eq!(back.at.timestamp_millis(), at.timestamp_millis());
        assert_eq!(back.metadata.parse()["z"], 1);
    }
}
