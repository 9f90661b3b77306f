//! Typed, versioned checkpoints: where a poller or a tail resumes.
//!
//! A source's checkpoint is saved in the same commit as the records it
//! covers (see [`super::Commit`]) and read back once at start. It is stored
//! as a small JSON envelope, `{"kind": "poll", "version": 1, "state": {...}}`,
//! so a version of audit-ingest that meets a checkpoint it cannot read says
//! exactly that (a typed, fatal [`CheckpointError`]) instead of guessing.
//! Any incompatible change to a state type needs a new version number, and
//! the reader keeps understanding the old ones.
//!
//! Checkpoints written before the envelope existed (the bare state, with
//! no `kind`) are read as version 0 of whatever kind the reader expects;
//! version 0 has the same layout as version 1.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A state type a source checkpoints.
pub trait CheckpointState: Serialize + DeserializeOwned {
    /// What the state belongs to, e.g. `poll` or `tail`.
    const KIND: &'static str;
    /// The layout version written now.
    const VERSION: u32;
}

/// One source's checkpoint, ready to be stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The source it belongs to.
    pub source: String,
    /// The stored envelope.
    pub envelope: Value,
    /// The fencing token of the source's lease this write is made under,
    /// if it is leased: the store refuses it once the lease moved on.
    pub fence: Option<u64>,
}

/// Why a stored checkpoint cannot be used. Fatal for the source: it stops and
/// says how to start over, rather than reading from a wrong place.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The checkpoint belongs to another kind of source (a poller's cursor
    /// where a tail's position was expected, say).
    #[error(
        "the stored checkpoint of `{name}` is a {found} checkpoint, not a {expected} one; \
         another kind of source used this name before: delete its row from ingest_cursors to start over"
    )]
    WrongKind {
        /// The source's name.
        name: String,
        /// What was found.
        found: String,
        /// What the reader expected.
        expected: &'static str,
    },
    /// Written by a newer version of audit-ingest.
    #[error(
        "the stored {kind} checkpoint of `{name}` is version {found}, newer than this version of \
         audit-ingest understands (up to {supported}); run the version that wrote it, or delete its \
         row from ingest_cursors to start over"
    )]
    NewerVersion {
        /// The source's name.
        name: String,
        /// Its kind.
        kind: &'static str,
        /// The version found.
        found: u64,
        /// The newest version this build reads.
        supported: u32,
    },
    /// The state does not have the layout its version promises.
    #[error(
        "the stored {kind} checkpoint of `{name}` cannot be read ({cause}); delete its row \
         from ingest_cursors to start over"
    )]
    Unreadable {
        /// The source's name.
        name: String,
        /// Its kind.
        kind: &'static str,
        /// What did not parse.
        #[source]
        cause: serde_json::Error,
    },
}

impl Checkpoint {
    /// The checkpoint of `source` holding `state`.
    pub fn new<T: CheckpointState>(source: &str, state: &T) -> Checkpoint {
        Checkpoint {
            source: source.to_string(),
            envelope: serde_json::json!({
                "kind": T::KIND,
                "version": T::VERSION,
                "state": serde_json::to_value(state).unwrap_or(Value::Null),
            }),
            fence: None,
        }
    }

    /// The same checkpoint, written only while the source's lease still
    /// has fencing token `token` (see [`crate::store::lease`]).
    pub fn fenced(self, token: Option<u64>) -> Checkpoint {
        Checkpoint { fence: token, ..self }
    }

    /// Reads a stored envelope of `source` as a `T`.
    pub fn read<T: CheckpointState>(source: &str, stored: Value) -> Result<T, CheckpointError> {
        let kind = stored.get("kind").and_then(Value::as_str).map(str::to_string);
        let (version, state) = match kind {
            None => (0, stored),
            Some(found) if found != T::KIND => {
                return Err(CheckpointError::WrongKind {
                    name: source.to_string(),
                    found,
                    expected: T::KIND,
                });
            }
            Some(_) => {
                let version = stored.get("version").and_then(Value::as_u64).unwrap_or(u64::MAX);
                let state = stored.get("state").cloned().unwrap_or(Value::Null);
                (version, state)
            }
        };
        if version > u64::from(T::VERSION) {
            return Err(CheckpointError::NewerVersion {
                name: source.to_string(),
                kind: T::KIND,
                found: version,
                supported: T::VERSION,
            });
        }
        serde_json::from_value(state).map_err(|cause| CheckpointError::Unreadable {
            name: source.to_string(),
            kind: T::KIND,
            cause,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Spot {
        offset: u64,
    }
    impl CheckpointState for Spot {
        const KIND: &'static str = "spot";
        const VERSION: u32 = 1;
    }

    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    struct Other {}
    impl CheckpointState for Other {
        const KIND: &'static str = "other";
        const VERSION: u32 = 1;
    }

    #[test]
    fn a_checkpoint_reads_back_and_old_bare_states_still_read() {
        let saved = Checkpoint::new("s", &Spot { offset: 7 });
        assert_eq!(
            Checkpoint::read::<Spot>("s", saved.envelope.clone()).unwrap(),
            Spot { offset: 7 }
        );
        assert_eq!(
            Checkpoint::read::<Spot>("s", serde_json::json!({"offset": 3})).unwrap(),
            Spot { offset: 3 }
        );
        assert!(matches!(
            Checkpoint::read::<Other>("s", saved.envelope),
            Err(CheckpointError::WrongKind { .. })
        ));
    }

    #[test]
    fn newer_and_unreadable_checkpoints_are_typed_errors_that_say_what_to_do() {
        let newer = serde_json::json!({"kind": "spot", "version": 9, "state": {"offset": 1}});
        let err = Checkpoint::read::<Spot>("s", newer).unwrap_err();
        assert!(matches!(err, CheckpointError::NewerVersion { found: 9, .. }), "{err}");
        let bad = serde_json::json!({"kind": "spot", "version": 1, "state": {"offset": "x"}});
        let err = Checkpoint::read::<Spot>("s", bad).unwrap_err();
        assert!(err.to_string().contains("delete its row from ingest_cursors"), "{err}");
    }
}
