//! `audit-ingest verify`: the chain re-computed from the store file, every
//! digest's signature checked against the expected key, every digest's head
//! compared with the re-computed chain at its entry.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

use super::digest::{SignedDigest, hex};
use super::keys::PublicKey;
use crate::store::sqlite::chain::{self, ChainReport};

/// What to verify.
#[derive(Debug, Clone)]
pub struct Options {
    /// The embedded store's file.
    pub store_file: PathBuf,
    /// Where digest files are (besides the store's own copies).
    pub digest_dir: Option<PathBuf>,
    /// The keys a digest may be signed with (after a key rotation: the
    /// old and the new one).
    pub keys: Vec<PublicKey>,
    /// Only digests made at or after this are checked.
    pub since: Option<DateTime<Utc>>,
}

/// What verification found.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    /// The chain, record by record.
    pub chain: ChainReport,
    /// Digests whose signature and head were checked.
    pub digests_checked: usize,
    /// What makes the store fail verification besides the chain's findings.
    pub problems: Vec<String>,
    /// What verification could not cover.
    pub warnings: Vec<String>,
}

impl Verdict {
    /// Nothing altered, deleted or inserted, and every digest holds.
    pub fn clean(&self) -> bool {
        self.chain.findings_total == 0 && self.problems.is_empty()
    }
}

/// One digest and where it was found.
struct Found {
    digest: SignedDigest,
    in_store: bool,
    file: Option<PathBuf>,
}

/// Runs the whole check.
pub fn verify(options: &Options) -> anyhow::Result<Verdict> {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let mut found: BTreeMap<i64, Found> = BTreeMap::new();
    let mut accept = |text: &str, file: Option<&Path>, problems: &mut Vec<String>| {
        let origin = file.map_or_else(|| "the store".to_string(), |f| f.display().to_string());
        let digest = match SignedDigest::parse(text) {
            Ok(d) => d,
            Err(e) => return problems.push(format!("digest in {origin}: {e}")),
        };
        if !options.keys.iter().any(|k| digest.check(k).is_ok()) {
            let why = options
                .keys
                .first()
                .map(|k| digest.check(k).err().map(|e| e.to_string()).unwrap_or_default())
                .unwrap_or_else(|| "no key to check it with".into());
            let also = if options.keys.len() > 1 {
                format!(" (nor with the {} other keys given)", options.keys.len() - 1)
            } else {
                String::new()
            };
            return problems.push(format!(
                "digest of entry {} in {origin} is refused: {why}{also}",
                digest.digest.last_seq
            ));
        }
        let seq = digest.digest.last_seq;
        match found.get_mut(&seq) {
            // Two signatures of the same chain value (made at different
            // times) agree; two values for one entry cannot both be true.
            Some(known) if known.digest.digest.head != digest.digest.head => problems.push(format!(
                "two signed digests of entry {seq} name different chain values (one of them is {origin})"
            )),
            Some(known) => {
                known.in_store |= file.is_none();
                known.file = known.file.take().or(file.map(Path::to_path_buf));
            }
            None => {
                found.insert(
                    seq,
                    Found {
                        digest,
                        in_store: file.is_none(),
                        file: file.map(Path::to_path_buf),
                    },
                );
            }
        }
    };
    let conn = Connection::open_with_flags(
        &options.store_file,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let stored: Vec<String> = conn
        .prepare("SELECT body FROM chain_digests ORDER BY last_seq")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .unwrap_or_default();
    drop(conn);
    for text in &stored {
        accept(text, None, &mut problems);
    }
    if let Some(dir) = &options.digest_dir {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with("digest-") && n.ends_with(".json"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        for file in files {
            match std::fs::read_to_string(&file) {
                Ok(text) => accept(&text, Some(&file), &mut problems),
                Err(e) => problems.push(format!("{}: {e}", file.display())),
            }
        }
    }
    if let Some(since) = options.since {
        found.retain(|_, f| f.digest.digest.period_end >= since);
    }
    for (seq, f) in &found {
        if !f.in_store && options.digest_dir.is_some() {
            problems.push(format!(
                "the digest of entry {seq} ({}) is missing from the store: digests were deleted there",
                f.file.as_ref().map_or_else(String::new, |p| p.display().to_string())
            ));
        }
    }
    let seqs: Vec<i64> = found.keys().copied().collect();
    let report = chain::verify(&options.store_file, &seqs)?;
    let cut = report.cut;
    let mut before_cut = 0;
    for (seq, head) in &report.heads {
        let f = &found[seq];
        let signed = f.digest.digest.period_end;
        match head {
            Some(h) if Some(*h) == f.digest.head() => {}
            Some(h) => problems.push(format!(
                "the chain up to entry {seq} is {} but the digest signed {signed} says {}: records or chain entries up to it were rewritten",
                hex(h),
                f.digest.digest.head
            )),
            // Entries retention dropped, with every record they wrote.
            None if cut.is_some_and(|c| *seq < c.after) => before_cut += 1,
            None => problems.push(format!(
                "the chain no longer reaches entry {seq}, which the digest signed {signed} covers: entries were deleted"
            )),
        }
    }
    if let Some(c) = cut {
        if !found.contains_key(&c.after) && options.since.is_none() {
            problems.push(format!(
                "the chain starts after entry {} (cut by retention), but no signed digest of entry {} was found: the cut cannot be checked",
                c.after, c.after
            ));
        }
        if seqs.last().is_none_or(|last| *last < c.entry) {
            problems.push(format!(
                "the chain was cut (entries up to {} dropped) after the newest signed digest: no digest records the cut",
                c.after
            ));
        }
        warnings.push(format!(
            "retention cut the chain: entries 1 to {} were dropped with every record they wrote{}",
            c.after,
            if before_cut > 0 {
                format!("; {before_cut} digests cover only dropped entries")
            } else {
                String::new()
            }
        ));
    }
    let last_signed = seqs.last().copied().unwrap_or(0);
    match report.head {
        Some((last, _)) if last > last_signed && last_signed > 0 => warnings.push(format!(
            "entries {} to {last} were chained after the last digest: checked against their links only, a digest will cover them",
            last_signed + 1
        )),
        Some(_) if found.is_empty() => problems.push(
            "no signed digest was found: without one a rewritten chain cannot be told from the original".into(),
        ),
        _ => {}
    }
    if report.genesis_after > 0 {
        warnings.push(format!(
            "records 1 to {} were written before the chain began and are not covered",
            report.genesis_after
        ));
    }
    Ok(Verdict {
        chain: report,
        digests_checked: found.len(),
        problems,
        warnings,
    })
}

/// What the command was asked.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// The expected public keys' files (default: the configured key's
    /// public half); after a rotation, the old key's and the new one's.
    pub public_keys: Vec<PathBuf>,
    /// Only digests made at or after this.
    pub since: Option<DateTime<Utc>>,
    /// Digest files (default: the configured digest directory).
    pub digests: Option<PathBuf>,
}

/// `audit-ingest verify` for a loaded configuration.
pub fn for_settings(settings: &crate::config::Settings, request: Request) -> anyhow::Result<Verdict> {
    if settings.mongodb_uri.is_some() {
        anyhow::bail!(
            "the MongoDB store keeps no hash chain yet; verify checks the embedded store (see docs/evidence.md)"
        );
    }
    let config = &settings.config;
    let mut keys = request
        .public_keys
        .iter()
        .map(|path| PublicKey::read(path))
        .collect::<Result<Vec<_>, _>>()?;
    if keys.is_empty() {
        match &settings.signing_key {
            Some(key) => keys.push(key.public()),
            None => anyhow::bail!(
                "no key to check digests with: pass --public-key <file>.pub, or configure the signing key (AUDIT_SIGNING_KEY_FILE)"
            ),
        }
    }
    let store_file = config.data_dir.join("audit.sqlite3");
    if !store_file.exists() {
        anyhow::bail!("no embedded store at {}", store_file.display());
    }
    verify(&Options {
        store_file,
        digest_dir: Some(
            request
                .digests
                .unwrap_or_else(|| config.evidence.digest_dir(&config.data_dir)),
        ),
        keys,
        since: request.since,
    })
}

/// The verdict as a person reads it.
pub fn render(verdict: &Verdict) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let chain = &verdict.chain;
    let _ = writeln!(
        out,
        "records compared: {}, chain entries: {}, signed digests checked: {}",
        chain.records, chain.entries, verdict.digests_checked
    );
    for finding in &chain.findings {
        let line = match finding {
            chain::Finding::Altered { id } => format!("ALTERED  record {id}: its columns are not what was written"),
            chain::Finding::Deleted { id } => {
                format!("DELETED  record {id}: written, never removed by the service, gone")
            }
            chain::Finding::Inserted { id } => format!("INSERTED record {id}: the service never wrote it"),
            chain::Finding::EntriesMissing { from_seq, to_seq } => {
                format!("DELETED  chain entries {from_seq} to {to_seq}")
            }
            chain::Finding::EntryAltered { seq } => format!("ALTERED  chain entry {seq}: its value does not follow"),
        };
        let _ = writeln!(out, "{line}");
    }
    if chain.findings_total > chain.findings.len() as u64 {
        let _ = writeln!(
            out,
            "... and {} more",
            chain.findings_total - chain.findings.len() as u64
        );
    }
    for p in &verdict.problems {
        let _ = writeln!(out, "PROBLEM  {p}");
    }
    for w in &verdict.warnings {
        let _ = writeln!(out, "note     {w}");
    }
    let _ = writeln!(
        out,
        "{}",
        if verdict.clean() {
            "verified: nothing was altered, deleted or inserted"
        } else {
            "NOT verified"
        }
    );
    out
}
