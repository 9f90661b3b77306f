//! Which Stalwart event type feeds which `stalwart.*` verb.
//!
//! Type names are Stalwart's own (`<family>.<kebab-variant>`), both the 0.16
//! names and the 0.15 names they replaced. A type not listed here keeps its
//! own name, normalised (`smtp.connection-start` → `stalwart.smtp_connection_start`),
//! and is flagged as unrecognised so it can be re-mapped later: it is never dropped.
//!
//! Stalwart has no event for an account being created or deleted or a
//! password being changed (no `principal.*`, `account.*` or password event in
//! any version), so there are no such verbs.

use audit_guest_sdk::json::{field, snake_case, text};
use audit_guest_sdk::serde_json::Value;
use audit_guest_sdk::Outcome;

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
    ("message-ingest.spam", "spam_detected", Failure, Message),
];

/// The type names mapped deliberately.
pub fn known_types() -> impl Iterator<Item = &'static str> {
    TABLE.iter().map(|(t, ..)| *t)
}

/// Classifies one event by its type (and, for `spam.classify`, its result).
pub fn classify(typ: &str, data: &Value) -> Verb {
    if typ == "spam.classify" {
        let result = field(data, "result").and_then(text).unwrap_or_default();
        if result == "reject" || result == "discard" {
            return verb("spam_detected", Failure, Message);
        }
    }
    match TABLE.iter().find(|(t, ..)| *t == typ) {
        Some((_, name, outcome, target)) => verb(name, *outcome, *target),
        None => Verb {
            name: snake_case(typ),
            outcome: Unknown,
            target: TargetKind::None,
            catch_all: true,
        },
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
