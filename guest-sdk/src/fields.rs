//! Reading a JSON object's fields without building a tree: one pass over
//! the object's text records each member's name and where its value is
//! (a borrowed [`RawValue`]); nothing below the top level is parsed until
//! asked for, and no string is copied unless it holds escapes.
//!
//! [`Object`] answers what [`crate::json::field`], [`crate::json::text`] and
//! [`crate::json::first_text`] answer for a parsed [`serde_json::Value`],
//! with the same rules (exact name first, then other spellings; a repeated
//! member's last value; numbers and booleans as text; integers exact), at a
//! fraction of the cost in a component, where every allocation of a tree
//! goes through the guest's allocator.
//!
//! ```
//! use audit_guest_sdk::fields::Object;
//! let event = Object::parse(r#"{"type":"auth.failed","data":{"accountName":"a@b","spanId":1432795268419584001}}"#).unwrap();
//! assert_eq!(event.text("type").as_deref(), Some("auth.failed"));
//! let data = event.object("data").unwrap();
//! assert_eq!(data.first_text(&["login", "account_name"]).as_deref(), Some("a@b"));
//! assert_eq!(data.text("spanId").as_deref(), Some("1432795268419584001"));
//! assert!(data.get("remoteIp").is_none());
//! ```

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::json::same_name;

/// A JSON object's members, in document order, values unparsed.
#[derive(Debug, Clone, Default)]
pub struct Object<'a> {
    members: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> Object<'a> {
    /// The members of the JSON object `text`; `None` if `text` is not one
    /// (or not JSON).
    pub fn parse(text: &'a str) -> Option<Object<'a>> {
        if first_byte(text) != Some(b'{') {
            return None;
        }
        serde_json::from_str::<Object<'a>>(text).ok()
    }

    /// The members of `raw` if it is an object.
    pub fn of(raw: &'a RawValue) -> Option<Object<'a>> {
        Object::parse(raw.get())
    }

    /// Every member, in document order (a repeated name appears each time).
    pub fn members(&self) -> &[(Cow<'a, str>, &'a RawValue)] {
        &self.members
    }

    /// The value named `name`: the member of exactly that name, else the
    /// first, in name order, whose name differs only in case and separators
    /// (`account_id` for `accountId`), as [`crate::json::field`] finds it.
    /// A name given twice yields its last value, as a parsed object keeps.
    pub fn get(&self, name: &str) -> Option<&'a RawValue> {
        if let Some((_, v)) = self.members.iter().rev().find(|(k, _)| k == name) {
            return Some(*v);
        }
        let mut best: Option<&(Cow<'a, str>, &'a RawValue)> = None;
        for member in &self.members {
            if same_name(&member.0, name) && best.is_none_or(|b| member.0 <= b.0) {
                best = Some(member);
            }
        }
        best.map(|(_, v)| *v)
    }

    /// The object named `name`, if that member is one.
    pub fn object(&self, name: &str) -> Option<Object<'a>> {
        self.get(name).and_then(Object::of)
    }

    /// The member `name` as text (see [`text`]).
    pub fn text(&self, name: &str) -> Option<String> {
        self.get(name).and_then(text)
    }

    /// The first of `names` that has a text value.
    pub fn first_text(&self, names: &[&str]) -> Option<String> {
        names.iter().find_map(|n| self.text(n))
    }

    /// The member `name` as a list of texts (see [`texts`]); empty if absent.
    pub fn texts(&self, name: &str) -> Vec<String> {
        self.get(name).map(texts).unwrap_or_default()
    }
}

/// A value that is sometimes a string and sometimes a number or a bool, as
/// text, like [`crate::json::text`]: a non-empty string as it decodes, a
/// number as serde_json prints it (integers digit for digit, never through
/// `f64`), `true` / `false`; anything else is `None`.
pub fn text(raw: &RawValue) -> Option<String> {
    let s = raw.get().trim();
    match s.as_bytes().first()? {
        b'"' => {
            let text = string(s)?;
            (!text.is_empty()).then(|| text.into_owned())
        }
        b't' if s == "true" => Some("true".into()),
        b'f' if s == "false" => Some("false".into()),
        b'-' | b'0'..=b'9' => serde_json::from_str::<serde_json::Number>(s)
            .ok()
            .map(|n| n.to_string()),
        _ => None,
    }
}

/// Each text of a list, or the one text of a single value.
pub fn texts(raw: &RawValue) -> Vec<String> {
    let s = raw.get();
    if first_byte(s) == Some(b'[') {
        let items: Vec<&RawValue> = serde_json::from_str(s).unwrap_or_default();
        return items.into_iter().filter_map(text).collect();
    }
    text(raw).into_iter().collect()
}

/// A JSON string literal's content: borrowed when it has no escapes.
pub fn string(literal: &str) -> Option<Cow<'_, str>> {
    let inner = literal.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.bytes().any(|b| b == b'\\' || b < 0x20) {
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(literal).ok().map(Cow::Owned)
}

fn first_byte(text: &str) -> Option<u8> {
    text.trim_start().as_bytes().first().copied()
}

/// A member name, borrowed from the text unless it has escapes.
struct Name<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl<'de> Visitor<'de> for NameVisitor {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(NameVisitor)
    }
}

impl<'de> Deserialize<'de> for Object<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = Object<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Object<'de>, M::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some(Name(name)) = map.next_key::<Name<'de>>()? {
                    members.push((name, map.next_value::<&'de RawValue>()?));
                }
                Ok(Object { members })
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json;
    use serde_json::Value;

    /// [`json::field`] as a component sees it (serde_json without
    /// `preserve_order`: members in name order), whatever features another
    /// crate of a native build turned on.
    fn field_in_name_order<'v>(value: &'v Value, name: &str) -> Option<&'v Value> {
        let map = value.as_object()?;
        if let Some(v) = map.get(name) {
            return Some(v);
        }
        let mut names: Vec<&String> = map.keys().collect();
        names.sort();
        names.into_iter().find(|k| json::same_name(k, name)).map(|k| &map[k])
    }

    /// Every lookup answers as the tree-building helpers answer, on objects
    /// with other spellings, repeated names, escapes and every kind of value.
    #[test]
    fn answers_as_the_parsed_value_does() {
        let samples = [
            r#"{"accountName":"a@b","account_name":"x","AccountName":"y","n":1432795268419584001,"f":1.50,"neg":-7}"#,
            r#"{"k":"first","k":"last","e":"","b":true,"z":false,"nul":null,"o":{"a":1},"l":[1,"x",null,"",true]}"#,
            r#"{"esc\u0061ped":"tab\there \"q\" \u00e9","remote-ip":"10.0.0.1","REMOTEIP":"10.0.0.2","big":1e3,"exp":-0}"#,
            r#"{}"#,
        ];
        let names = [
            "accountName",
            "account_name",
            "accountname",
            "n",
            "f",
            "neg",
            "k",
            "e",
            "b",
            "z",
            "nul",
            "o",
            "l",
            "escaped",
            "remoteIp",
            "remote_ip",
            "big",
            "exp",
            "missing",
        ];
        for sample in samples {
            let value: Value = serde_json::from_str(sample).unwrap();
            let object = Object::parse(sample).unwrap();
            for name in names {
                assert_eq!(
                    object.text(name),
                    field_in_name_order(&value, name).and_then(json::text),
                    "text of {name} in {sample}"
                );
                assert_eq!(
                    object.texts(name),
                    field_in_name_order(&value, name).map(json::texts).unwrap_or_default(),
                    "texts of {name} in {sample}"
                );
                assert_eq!(
                    object
                        .get(name)
                        .map(|r| serde_json::from_str::<Value>(r.get()).unwrap()),
                    field_in_name_order(&value, name).cloned(),
                    "value of {name} in {sample}"
                );
            }
        }
    }

    #[test]
    fn only_objects_parse() {
        assert!(Object::parse("[1]").is_none());
        assert!(Object::parse("\"x\"").is_none());
        assert!(Object::parse("{").is_none());
        assert!(Object::parse(" {\"a\":1} ").is_some());
    }
}
