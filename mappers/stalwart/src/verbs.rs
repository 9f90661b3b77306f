//! Which Stalwart event type feeds which `stalwart.*` verb.
//!
//! Three tiers, every one deliberate:
//!
//! 1. The audit verbs (`TABLE`): the types that say someone logged in, failed
//!    to, was banned, or that mail was received, delivered, bounced, rejected
//!    or failed authentication checks. 0.16 names, the 0.15 names they
//!    replaced, and the legacy 0.8 names all feed the same verbs.
//! 2. Every other type Stalwart can send (the 637 names of 0.16, the 0.15
//!    names since removed; `known_types`) keeps its own name as the verb,
//!    normalised (`smtp.connection-start` → `stalwart.smtp_connection_start`),
//!    with an outcome read from the name and level (`*-error`, `*-fail`, … and
//!    Error-level types are failures; `*-success`, `*-pass`, … successes).
//! 3. A type no known version sends (a future release) gets the same
//!    normalised verb but is flagged unrecognised, so it can be re-mapped
//!    once this mapper learns it. Nothing is ever dropped.
//!
//! Stalwart has no event for an account being created or deleted or a
//! password being changed (no `principal.*`, `account.*` or password event in
//! any version), so there are no such verbs.

use audit_guest_sdk::Outcome;
use audit_guest_sdk::fields::Object;
use audit_guest_sdk::json::snake_case;

use crate::known_types::{self, Level};

/// What an event's target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// The account that authenticated or was banned.
    Account,
    /// A message (recipients, message or queue id).
    Message,
    /// A domain checked by SPF, DKIM or DMARC.
    Domain,
    /// An IP address that was blocked.
    Ip,
    /// Nothing in particular.
    None,
}

/// The result of classifying one event type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verb {
    /// The verb after `stalwart.`.
    pub name: String,
    /// Success or failure as the type implies.
    pub outcome: Outcome,
    /// What the target is.
    pub target: TargetKind,
    /// True when the type is not in the table.
    pub catch_all: bool,
}

use Outcome::{Failure, Success, Unknown};
use TargetKind::{Account, Domain, Ip, Message};

/// `(type, verb, outcome, target)`.
const TABLE: &[(&str, &str, Outcome, TargetKind)] = &[
    ("auth.success", "auth_success", Success, Account),
    ("auth.failed", "auth_failed", Failure, Account),
    ("auth.error", "auth_failed", Failure, Account),
    ("auth.too-many-attempts", "auth_failed", Failure, Account),
    ("auth.mfa-required", "auth_failed", Failure, Account),
    ("auth.missing-totp", "auth_failed", Failure, Account),
    ("auth.token-expired", "auth_failed", Failure, Account),
    ("auth.credential-expired", "auth_failed", Failure, Account),
    ("security.authentication-ban", "auth_banned", Failure, Ip),
    ("security.abuse-ban", "auth_banned", Failure, Ip),
    ("security.scan-ban", "auth_banned", Failure, Ip),
    ("security.loiter-ban", "auth_banned", Failure, Ip),
    ("security.ip-blocked", "auth_banned", Failure, Ip),
    ("security.brute-force-ban", "auth_banned", Failure, Ip),
    ("queue.message-queued", "mail_received", Success, Message),
    ("queue.queue-message", "mail_received", Success, Message),
    ("queue.authenticated-message-queued", "mail_received", Success, Message),
    ("queue.queue-message-authenticated", "mail_received", Success, Message),
    ("message-ingest.ham", "mail_delivered", Success, Message),
    ("message-ingest.imap-append", "mail_delivered", Success, Message),
    ("message-ingest.jmap-append", "mail_delivered", Success, Message),
    ("delivery.delivered", "mail_delivered", Success, Message),
    ("delivery.failed", "mail_failed", Failure, Message),
    ("delivery.dsn-perm-fail", "mail_failed", Failure, Message),
    ("delivery.double-bounce", "mail_failed", Failure, Message),
    ("smtp.relay-not-allowed", "mail_rejected", Failure, Message),
    ("smtp.mailbox-does-not-exist", "mail_rejected", Failure, Message),
    ("smtp.message-too-large", "mail_rejected", Failure, Message),
    ("delivery.message-rejected", "mail_rejected", Failure, Message),
    ("delivery.rcpt-to-rejected", "mail_rejected", Failure, Message),
    ("milter.action-reject", "policy_rejection", Failure, Message),
    ("mta-hook.action-reject", "policy_rejection", Failure, Message),
    ("sieve.action-reject", "policy_rejection", Failure, Message),
    ("smtp.dkim-fail", "dkim_failure", Failure, Domain),
    ("smtp.dmarc-fail", "dmarc_failure", Failure, Domain),
    ("smtp.spf-from-fail", "spf_failure", Failure, Domain),
    ("smtp.spf-ehlo-fail", "spf_failure", Failure, Domain),
    ("smtp.mail-from-unauthorized", "mail_rejected", Failure, Message),
    ("smtp.mail-from-unauthenticated", "mail_rejected", Failure, Message),
    ("smtp.mail-from-not-allowed", "mail_rejected", Failure, Message),
    ("milter.action-discard", "policy_rejection", Failure, Message),
    ("mta-hook.action-discard", "policy_rejection", Failure, Message),
    ("mta-hook.action-quarantine", "policy_rejection", Failure, Message),
    ("sieve.action-discard", "policy_rejection", Failure, Message),
    ("message-ingest.spam", "spam_detected", Failure, Message),
    // The legacy 0.8 format's own names.
    ("auth.failure", "auth_failed", Failure, Account),
    ("auth.banned", "auth_banned", Failure, Ip),
    ("message.accepted", "mail_received", Success, Message),
    ("message.rejected", "mail_rejected", Failure, Message),
    ("message.appended", "mail_delivered", Success, Message),
    ("double-bounce", "mail_failed", Failure, Message),
];

/// Name fragments that make an otherwise unmapped type a failure, checked
/// before the success fragments (`invalid` contains `valid`).
const FAILURE_WORDS: [&str; 23] = [
    "fail",
    "error",
    "reject",
    "denied",
    "refused",
    "invalid",
    "ban",
    "blocked",
    "unauthorized",
    "not-allowed",
    "not-found",
    "expired",
    "too-many",
    "exceeded",
    "timeout",
    "abort",
    "broken",
    "missing",
    "mismatch",
    "unsupported",
    "no-valid",
    "revoked",
    "syntax",
];
const SUCCESS_WORDS: [&str; 6] = ["success", "pass", "completed", "delivered", "accepted", "valid"];

/// The type names that feed an audit verb (tier 1).
pub fn audit_types() -> impl Iterator<Item = (&'static str, &'static str)> {
    TABLE.iter().map(|(t, v, ..)| (*t, *v))
}

/// Classifies one event by its type (and, for `spam.classify`, its result).
pub fn classify(typ: &str, data: &Object<'_>) -> Verb {
    if typ == "spam.classify" {
        let result = data.text("result").unwrap_or_default();
        if result == "reject" || result == "discard" {
            return verb("spam_detected", Failure, Message);
        }
    }
    if let Some((_, name, outcome, target)) = TABLE.iter().find(|(t, ..)| *t == typ) {
        return verb(name, *outcome, *target);
    }
    Verb {
        name: snake_case(typ),
        outcome: outcome_from_name(typ),
        target: TargetKind::None,
        catch_all: !known_types::is_known(typ),
    }
}

/// The outcome a type's name and level imply.
fn outcome_from_name(typ: &str) -> Outcome {
    let variant = typ.split_once('.').map_or(typ, |(_, v)| v);
    if FAILURE_WORDS.iter().any(|w| variant.contains(w)) || known_types::level(typ) == Some(Level::Error) {
        Failure
    } else if SUCCESS_WORDS.iter().any(|w| variant.contains(w)) {
        Success
    } else {
        Unknown
    }
}

fn verb(name: &str, outcome: Outcome, target: TargetKind) -> Verb {
    Verb {
        name: name.to_string(),
        outcome,
        target,
        catch_all: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_stalwart_sends_maps_deliberately() {
        let names = known_types::CURRENT
            .iter()
            .map(|(n, _)| *n)
            .chain(known_types::REMOVED_IN_0_16);
        let mut count = 0;
        for name in names {
            let v = classify(name, &Object::default());
            assert!(!v.catch_all, "{name} fell through to the catch-all");
            assert!(
                !v.name.is_empty() && !v.name.contains(['.', '-']),
                "{name} → {}",
                v.name
            );
            count += 1;
        }
        assert_eq!(count, 637 + 51);
    }

    #[test]
    fn seed_verbs_without_a_stalwart_event_are_never_produced() {
        for (name, _) in known_types::CURRENT {
            let v = classify(name, &Object::default());
            assert!(!["account_created", "account_deleted", "password_changed"].contains(&v.name.as_str()));
        }
    }

    #[test]
    fn audit_types_exist_in_some_stalwart_version() {
        for (typ, _) in audit_types() {
            assert!(known_types::is_known(typ), "{typ} is not a Stalwart type");
        }
    }

    #[test]
    fn a_future_type_is_kept_under_its_own_name() {
        let v = classify("quantum.entanglement-detected", &Object::default());
        assert_eq!(v.name, "quantum_entanglement_detected");
        assert!(v.catch_all);
    }

    #[test]
    fn outcomes_follow_the_name() {
        assert_eq!(classify("store.sqlite-error", &Object::default()).outcome, Failure);
        assert_eq!(classify("smtp.spf-ehlo-pass", &Object::default()).outcome, Success);
        assert_eq!(classify("dkim.no-valid-algorithm", &Object::default()).outcome, Failure);
        assert_eq!(classify("acme.order-valid", &Object::default()).outcome, Success);
        assert_eq!(classify("smtp.connection-start", &Object::default()).outcome, Unknown);
        assert_eq!(
            classify("spam.classify", &Object::parse(r#"{"result": "reject"}"#).unwrap()).name,
            "spam_detected"
        );
        assert_eq!(
            classify("spam.classify", &Object::parse(r#"{"result": "ham"}"#).unwrap()).name,
            "spam_classify"
        );
    }
}
