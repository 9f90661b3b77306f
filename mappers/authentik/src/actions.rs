//! Authentik's `EventAction` values and the verb each becomes.
//!
//! The list is the release schema of authentik 2026.8.5 (38 values, checked
//! against the generated client's `models/event_actions.py` for 2025.10.4,
//! 2026.2.7, 2026.5.8 and 2026.8.5). `action` is an open string upstream
//! (`Event.new("foo")` stores `custom_foo`, and newer releases add values), so
//! anything else still becomes `authentik.<action>`, flagged for re-mapping.

use audit_guest_sdk::Outcome;

/// `(action, verb, outcome)` for every action of authentik 2026.8.
const ACTIONS: &[(&str, &str, Outcome)] = &[
    // 2025.10
    ("login", "login", Outcome::Success),
    ("login_failed", "login_failed", Outcome::Failure),
    ("logout", "logout", Outcome::Success),
    ("user_write", "user_write", Outcome::Success),
    ("suspicious_request", "suspicious_request", Outcome::Failure),
    ("password_set", "password_changed", Outcome::Success),
    ("secret_view", "secret_view", Outcome::Success),
    ("secret_rotate", "secret_rotate", Outcome::Success),
    ("invitation_used", "invitation_used", Outcome::Success),
    ("authorize_application", "authorize_application", Outcome::Success),
    ("source_linked", "source_linked", Outcome::Success),
    ("impersonation_started", "impersonation_started", Outcome::Success),
    ("impersonation_ended", "impersonation_ended", Outcome::Success),
    ("flow_execution", "flow_execution", Outcome::Unknown),
    ("policy_execution", "policy_execution", Outcome::Unknown),
    ("policy_exception", "policy_exception", Outcome::Failure),
    (
        "property_mapping_exception",
        "property_mapping_exception",
        Outcome::Failure,
    ),
    ("system_task_execution", "system_task_execution", Outcome::Success),
    ("system_task_exception", "system_task_exception", Outcome::Failure),
    ("system_exception", "system_exception", Outcome::Failure),
    ("configuration_error", "configuration_error", Outcome::Failure),
    ("model_created", "model_created", Outcome::Success),
    ("model_updated", "model_updated", Outcome::Success),
    ("model_deleted", "model_deleted", Outcome::Success),
    ("email_sent", "email_sent", Outcome::Success),
    ("update_available", "update_available", Outcome::Unknown),
    // 2026.2
    ("configuration_warning", "configuration_warning", Outcome::Unknown),
    ("export_ready", "export_ready", Outcome::Success),
    ("review_initiated", "review_initiated", Outcome::Success),
    ("review_overdue", "review_overdue", Outcome::Unknown),
    ("review_attested", "review_attested", Outcome::Success),
    ("review_completed", "review_completed", Outcome::Success),
    // 2026.8
    ("user_offboarded", "user_offboarded", Outcome::Success),
    ("access_request_created", "access_request_created", Outcome::Success),
    ("access_request_approved", "access_request_approved", Outcome::Success),
    // The request was refused: a failure for the person who asked.
    ("access_request_denied", "access_request_denied", Outcome::Failure),
    ("access_request_revoked", "access_request_revoked", Outcome::Success),
];

/// `Event.new("foo")` stores `custom_foo`: the 38th value is this prefix.
const CUSTOM_PREFIX: &str = "custom_";

/// The verb an action maps to.
pub struct Verb {
    /// The part after `authentik.`.
    pub verb: String,
    /// Whether the action succeeded.
    pub outcome: Outcome,
    /// False for actions this version does not know (kept, flagged for re-mapping).
    pub known: bool,
}

/// Maps one action name.
pub fn verb_of(action: &str) -> Verb {
    if let Some((_, verb, outcome)) = ACTIONS.iter().find(|(a, ..)| *a == action) {
        return Verb {
            verb: verb.to_string(),
            outcome: *outcome,
            known: true,
        };
    }
    let clean = sanitize(action);
    if clean.is_empty() {
        return Verb {
            verb: "unknown".into(),
            outcome: Outcome::Unknown,
            known: false,
        };
    }
    Verb {
        known: action.starts_with(CUSTOM_PREFIX) && action.len() > CUSTOM_PREFIX.len(),
        verb: clean,
        outcome: Outcome::Unknown,
    }
}

/// The action names this mapper maps deliberately (the `custom_` prefix last).
pub fn known_actions() -> Vec<String> {
    ACTIONS
        .iter()
        .map(|(a, ..)| a.to_string())
        .chain([format!("{CUSTOM_PREFIX}*")])
        .collect()
}

/// An unknown action becomes part of a dotted verb: lower-case letters,
/// digits and `_` only, so a hostile value cannot forge `authentik.x.y`.
fn sanitize(action: &str) -> String {
    action
        .trim()
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_2026_8_action_and_the_custom_prefix_are_known() {
        assert_eq!(ACTIONS.len() + 1, 38, "authentik 2026.8.5 has 38 EventAction values");
        assert_eq!(verb_of("password_set").verb, "password_changed");
        assert!(verb_of("custom_backup_done").known);
        assert_eq!(verb_of("custom_backup_done").verb, "custom_backup_done");
    }

    #[test]
    fn unknown_actions_keep_their_name_but_are_flagged() {
        let v = verb_of("account_lockdown_triggered");
        assert_eq!((v.verb.as_str(), v.known), ("account_lockdown_triggered", false));
        let v = verb_of("evil.action name");
        assert_eq!(v.verb, "evil_action_name");
        assert_eq!(verb_of("").verb, "unknown");
    }
}
