//! What MongoDB cannot hold, found before a batch is sent: the driver fails
//! a whole `insertMany` client-side for one document over the 16 MiB limit
//! or with a key BSON cannot carry (one with a NUL), and the server refuses
//! documents nested past 100 levels. Such a record is taken out of its
//! batch and given back as refused (see `WriteSummary::refused`); the rest
//! commits.

use mongodb::bson::{Bson, Document};

/// MongoDB's largest document (`maxBsonObjectSize`).
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;

/// The deepest nesting kept (the document itself is level 1); MongoDB
/// refuses more than 100 levels, and one level of margin costs nothing.
const MAX_DEPTH: usize = 99;

/// Why MongoDB cannot hold `doc`, if it cannot.
pub fn unstorable(doc: &Document) -> Option<String> {
    let depth = depth_of(doc);
    if depth > MAX_DEPTH {
        return Some(format!("nested {depth} levels deep; MongoDB holds at most 100"));
    }
    let mut bytes = Vec::new();
    if let Err(e) = doc.to_writer(&mut bytes) {
        return Some(format!("not representable in BSON: {e}"));
    }
    (bytes.len() > MAX_DOCUMENT_BYTES).then(|| {
        format!(
            "{} bytes as BSON; MongoDB holds at most {MAX_DOCUMENT_BYTES} bytes per document",
            bytes.len()
        )
    })
}

/// How deep `doc` nests (itself: 1), without recursion (a hostile original
/// cannot overflow the stack).
fn depth_of(doc: &Document) -> usize {
    let mut deepest = 1;
    let mut todo: Vec<(&Bson, usize)> = doc.values().map(|v| (v, 2)).collect();
    while let Some((value, level)) = todo.pop() {
        match value {
            Bson::Document(d) => {
                deepest = deepest.max(level);
                todo.extend(d.values().map(|v| (v, level + 1)));
            }
            Bson::Array(a) => {
                deepest = deepest.max(level);
                todo.extend(a.iter().map(|v| (v, level + 1)));
            }
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::doc;

    #[test]
    fn a_key_with_a_nul_is_refused() {
        let d = doc! { "metadata": { "a\u{0}b": 1 } };
        let why = unstorable(&d).expect("refused");
        assert!(why.contains("BSON"), "{why}");
    }

    #[test]
    fn nesting_past_mongodbs_limit_is_refused_and_below_it_kept() {
        let nest = |levels: usize| {
            let mut inner = Bson::Int32(1);
            for _ in 0..levels {
                inner = Bson::Document(doc! { "x": inner });
            }
            doc! { "metadata": inner }
        };
        assert_eq!(unstorable(&nest(90)), None);
        let why = unstorable(&nest(150)).expect("refused");
        assert!(why.contains("151 levels"), "{why}");
    }

    #[test]
    fn a_document_over_16_mib_is_refused_and_one_under_it_kept() {
        let text = |n: usize| doc! { "metadataJson": "x".repeat(n) };
        assert_eq!(unstorable(&text(MAX_DOCUMENT_BYTES - 1024)), None);
        let why = unstorable(&text(MAX_DOCUMENT_BYTES)).expect("refused");
        assert!(why.contains("at most 16777216 bytes"), "{why}");
    }
}
