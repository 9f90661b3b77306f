//! The oCIS file tail on real files with real notify: every line exactly once
//! through appends, restarts, rotation, copytruncate, truncation, a missing
//! file and partial lines. Each test checks what landed in the store.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use audit_ingest::ingest::{ShutdownSignal, Tenants};
use audit_ingest::runtime::{InstanceMode, Limits};
use audit_ingest::sources::tail::{self, Position, StartAt};
use audit_ingest::store::Store;
use audit_ingest_tests::faulty::with_fault_switch;
use audit_ingest_tests::ocis::{append, append_range, line};
use audit_ingest_tests::{all_records, embedded_store, pipeline, runtime, source_context};

/// A running tail of `path` over the store in `data`; stop it with `stop`.
struct Running {
    stop: ShutdownSignal,
    task: tokio::task::JoinHandle<()>,
    store: Store,
}

impl Running {
    async fn stop(self) -> Store {
        self.stop.trigger();
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("the tail stops")
            .unwrap();
        self.store
    }
}

fn start(data: &Path, path: &Path, start_at: StartAt) -> Running {
    start_with(data, path, |config| config.start_at = start_at)
}

/// A tail with 500-line batches and whatever `adjust` changes.
fn start_with(data: &Path, path: &Path, adjust: impl FnOnce(&mut tail::Config)) -> Running {
    start_on(embedded_store(data), path, adjust)
}

/// A tail into `store`.
fn start_on(store: Store, path: &Path, adjust: impl FnOnce(&mut tail::Config)) -> Running {
    let mut config = audit_ingest::presets::ocis_tail(path);
    config.max_batch_lines = 500;
    adjust(&mut config);
    let stop = ShutdownSignal::new();
    let rt = runtime(None, InstanceMode::Reuse, Limits::default());
    let ctx = source_context(pipeline(store.clone(), rt, Tenants::default()), stop.subscribe());
    let task = tokio::spawn(tail::run(config.resolve().unwrap(), ctx));
    Running { stop, task, store }
}

/// Which generated line a record came from (its target id ends in `n` as 12 hex digits).
fn line_number(target_id: &str) -> u64 {
    u64::from_str_radix(&target_id[target_id.len() - 12..], 16).expect("a generated id")
}

/// How many records each generated line produced.
async fn counts(store: &Store) -> HashMap<u64, usize> {
    let mut counts = HashMap::new();
    for r in all_records(store, "ocis").await {
        *counts
            .entry(line_number(r.record.target_id.as_deref().expect("a target")))
            .or_insert(0) += 1;
    }
    counts
}

/// Waits until `n` records are stored (or 60 s pass), then checks that lines
/// `0..n` each landed exactly once.
async fn expect_each_once(store: &Store, n: u64) {
    wait_for_records(store, n as usize, Duration::from_secs(60)).await;
    // Give a wrongly repeated line the chance to show up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let counts = counts(store).await;
    let missing: Vec<u64> = (0..n).filter(|i| !counts.contains_key(i)).collect();
    let twice: Vec<(&u64, &usize)> = counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(
        missing.is_empty(),
        "{} of {n} lines never stored, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(
        twice.is_empty(),
        "lines stored more than once: {:?}",
        &twice[..twice.len().min(5)]
    );
    assert_eq!(counts.len() as u64, n, "no line beyond the ones written");
}

/// What logrotate's `copytruncate` does: copy to `<file>.1`, truncate in place.
fn copytruncate(path: &Path) {
    std::fs::copy(path, path.with_extension("log.1")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .unwrap();
}

/// Waits until at least `n` records are stored, or `limit` passes.
async fn wait_for_records(store: &Store, n: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    while all_records(store, "ocis").await.len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn audit_file(dir: &Path) -> PathBuf {
    dir.join("audit.log")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_appended_while_running_land_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let path = audit_file(dir.path());
    append_range(&path, 0, 100);
    let tail = start(dir.path(), &path, StartAt::Beginning);
    for n in 100..400 {
        append(&path, &line(n));
        if n % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    expect_each_once(&tail.store, 400).await;
    let records = all_records(&tail.store, "ocis").await;
    let create = records.iter().find(|r| r.record.action == "ocis.file_create").unwrap();
    assert_eq!(
        create.record.actor_id.as_deref(),
        Some("b1f74ec4-dd7e-11ef-a543-03775734d0f7")
    );
    let created_user = records.iter().find(|r| r.record.action == "ocis.user_created").unwrap();
    assert_eq!(
        created_user.record.actor_id.as_deref(),
        Some("some-admin-uuid"),
        "actor from Message when User is empty"
    );
    tail.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_mid_file_and_catches_up_what_was_written_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let path = audit_file(dir.path());
    append_range(&path, 0, 300);
    let tail = start(dir.path(), &path, StartAt::Beginning);
    expect_each_once(&tail.store, 300).await;
    drop(tail.stop().await);
    // Written while the service is down, ending in half a line.
    append_range(&path, 300, 700);
    let half = line(700);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut f| {
            use std::io::Write;
            f.write_all(&half.as_bytes()[..half.len() / 2])
        })
        .unwrap();
    let tail = start(dir.path(), &path, StartAt::Beginning);
    expect_each_once(&tail.store, 700).await;
    // The rest of the half line arrives.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut f| {
            use std::io::Write;
            f.write_all(format!("{}\n", &half[half.len() / 2..]).as_bytes())
        })
        .unwrap();
    expect_each_once(&tail.store, 701).await;
    tail.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_rotation_under_continuous_writes_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = audit_file(dir.path());
    let tail = start(dir.path(), &path, StartAt::Beginning);
    let writer_path = path.clone();
    let writer = std::thread::spawn(move || {
        for n in 0..3000u64 {
            append(&writer_path, &line(n));
            if n == 1000 || n == 2000 {
                // logrotate's default: rename, the next event creates a new file.
                let rotated = writer_path.with_extension(format!("log.{n}"));
                std::fs::rename(&writer_path, rotated).unwrap();
            }
            if n % 100 == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    });
    writer.join().unwrap();
    expect_each_once(&tail.store, 3000).await;
    tail.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_while_down_finishes_the_old_file_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = audit_file(dir.path());
    append_range(&path, 0, 200);
    let tail = start(dir.path(), &path, StartAt::Beginning);
    expect_each_once(&tail.store, 200).await;
    drop(tail.stop().await);
    append_range(&path, 200, 300); // still in the old file
    std::fs::rename(&path, dir.path().join("audit.log.1")).unwrap();
    append_range(&path, 300, 400); // the new file
    let tail = start(dir.path(), &path, StartAt::Beginning);
    expect_each_once(&tail.store, 400).await;
    tail.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copytruncate_reads_the_copy_to_its_end_then_the_new_content() {
    let dir = tempfile::tempdir().unwrap();
    let path = audit_file(dir.path());
    append_range(&path, 0, 200);
    let tail = start(dir.path(), &path, StartAt::Beginning);
    expect_each_once(&tail.store, 200).await;
    // Lines written just before logrotate copies and truncates, possibly unread.
    append_range(&path, 200, 260);
    copytruncate(&path);
    append_range(&path, 260, 300);
    expect_each_once(&tail.store, 300).await;
    tail.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copytruncate_while_down_finishes_the_unread_lines_from_the_copy() {
    let dir = tempfile::tempdir().unwrap();
    let path = audit_file(dir.path());
    append_range(&path, 0, 200);
    let tail = start(dir.path(), &path, StartAt::Beginning);
    expect_each_once(&tail.store, 200).await;
    drop(tail.stop().await);
    // Unread lines, then logrotate copies and truncates, then new lines.
    append_range(&path, 200, 260);
    copytruncate(&path);
    append_range(&path, 1000, 1040); // different content from the old first line
    let tail = start(dir.path(), &path, StartAt::Beginning);
    wait_for_records(&tail.store, 300, Duration::from_secs(30)).await;
    let counts = counts(&tail.store).await;
    assert!(
        (0..260).chain(1000..1040).all(|n| counts.get(&n) == Some(&1)),
        "every line once: {} stored",
        counts.len()
    );
    assert_eq!(counts.len(), 300);
    tail.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_truncation_is_detected_and_the_new_content_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = audit_file(dir.path());
    append_range(&path, 0, 150);
    let tail = start(dir.path(), &path, StartAt::Beginning);
    expect_each_once(&tail.store, 150).await;
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    append_range(&path, 150, 170);
    expect_each_once(&tail.store, 170).await;
    tail.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_missing_at_start_is_picked_up_when_it_appears() {
    let dir = tempfile::tempdir().unwrap();
    let path = audit_file(dir.path());
    let tail = start(dir.path(), &path, StartAt::End);
    tokio::time::sleep(Duration::from_millis(300)).await;
    append_range(&path, 0, 50);
    expect_each_once(&tail.store, 50).await;
    tail.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_line_waits_for_its_newline() {
    let dir = tempfile::tempdir().unwrap();
    let path = audit_file(dir.path());
    append_range(&path, 0, 10);
    let text = line(10);
    let (head, rest) = text.split_at(text.len() / 3);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut f| {
            use std::io::Write;
            f.write_all(head.as_bytes())
        })
        .unwrap();
    let tail = start(dir.path(), &path, StartAt::Beginning);
    expect_each_once(&tail.store, 10).await;
    assert!(
        tail.store.dead_letters(10).await.unwrap().is_empty(),
        "half a line is not an error"
    );
    append(&path, rest);
    expect_each_once(&tail.store, 11).await;
    tail.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_lines_are_two_events_and_a_reread_is_none() {
    let dir = tempfile::tempdir().unwrap();
    let path = audit_file(dir.path());
    // The same user downloading the same file twice within one second.
    append(&path, &line(1));
    append(&path, &line(1));
    let tail = start(dir.path(), &path, StartAt::Beginning);
    wait_for_records(&tail.store, 2, Duration::from_secs(30)).await;
    let store = tail.stop().await;
    assert_eq!(counts(&store).await.get(&1), Some(&2));
    // Forget the position: reading the file again from the start adds nothing.
    let (writer, _) = embedded_store_cursor_reset(dir.path()).await;
    drop(writer);
    let tail = start(dir.path(), &path, StartAt::Beginning);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        counts(&tail.store).await.get(&1),
        Some(&2),
        "same file, same offsets: same ids"
    );
    tail.stop().await;
}

/// Replaces the stored position with one for another file, as if the tail
/// had never seen this one.
async fn embedded_store_cursor_reset(data: &Path) -> (Store, ()) {
    let store = embedded_store(data);
    // A position as an earlier version stored it (the bare state, no envelope).
    let old = serde_json::json!({"file": {"dev": 0, "ino": 0, "head": "0000000000000000"}, "offset": 0});
    let position: Position = audit_ingest::store::Checkpoint::read("ocis", old).unwrap();
    store
        .save_checkpoint(audit_ingest::store::Checkpoint::new("ocis", &position))
        .await
        .unwrap();
    (store, ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minimal_format_line_is_kept_and_reported_and_the_rest_flows() {
    let dir = tempfile::tempdir().unwrap();
    let path = audit_file(dir.path());
    append_range(&path, 0, 5);
    append(&path, "file_delete)");
    append(&path, "   user 'user_id' trashed file 'item_id'");
    append_range(&path, 5, 10);
    let tail = start(dir.path(), &path, StartAt::Beginning);
    expect_each_once(&tail.store, 10).await;
    let letters = tail.store.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 2, "both lines of the minimal record are kept");
    assert!(
        letters.iter().all(|(_, l)| l.error.contains("AUDIT_FORMAT=json")),
        "{letters:?}"
    );
    assert!(
        letters
            .iter()
            .map(|(_, l)| l.body.clone())
            .collect::<Vec<_>>()
            .contains(&b"file_delete)".to_vec())
    );
    tail.stop().await;
}

/// The tail sends a mapper several lines per call; a mapper that only reads
/// one (here the Stalwart mapper, on a file of Stalwart events) still gets
/// every line once, one per call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapper_that_reads_one_line_per_call_still_gets_every_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = audit_file(dir.path());
    let text: String = (0..300)
        .map(|n| {
            format!(
                r#"{{"id":"{n}","createdAt":"2025-06-15T15:06:40Z","type":"auth.failed","data":{{"accountName":"user{n}","remoteIp":"192.0.2.7","spanId":{}}}}}"#,
                1432795268419584001u64 + n
            ) + "\n"
        })
        .collect();
    std::fs::write(&path, text).unwrap();
    let tail = start_with(dir.path(), &path, |config| config.mapper = Some("stalwart".into()));
    wait_for_records(&tail.store, 300, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let records = all_records(&tail.store, "ocis").await;
    let actors: std::collections::HashSet<_> = records.iter().filter_map(|r| r.record.actor_name.clone()).collect();
    assert_eq!((records.len(), actors.len()), (300, 300), "each line once");
    assert!(records.iter().all(|r| r.record.action == "stalwart.auth_failed"));
    assert!(
        tail.store.dead_letters(10).await.unwrap().is_empty(),
        "no line was refused"
    );
    tail.stop().await;
}

/// Appends lines `from..middle`, one line in oCIS's `minimal` format (not
/// JSON), then lines `middle..to`.
fn append_around_a_bad_line(path: &Path, from: u64, middle: u64, to: u64) {
    append_range(path, from, middle);
    append(path, "file_delete)");
    append_range(path, middle, to);
}

/// The `minimal`-format line was kept, once.
async fn expect_one_dead_letter(store: &Store) {
    let letters = store.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1, "the minimal-format line is kept once: {letters:?}");
    assert_eq!(letters[0].1.body, b"file_delete)".to_vec());
}

/// Several mapping threads (more than this machine may have cores) split a
/// batch between them; the records still land once each, in file order,
/// and a bad line among them is still kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_mapped_on_several_threads_land_once_each_in_file_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = audit_file(dir.path());
    append_around_a_bad_line(&path, 0, 1500, 3000);
    let tail = start_with(dir.path(), &path, |config| {
        config.mapping_threads = Some(3);
        config.max_batch_lines = 2000;
    });
    expect_each_once(&tail.store, 3000).await;
    let oldest_first: Vec<u64> = all_records(&tail.store, "ocis")
        .await
        .iter()
        .rev()
        .map(|r| line_number(r.record.target_id.as_deref().expect("a target")))
        .collect();
    assert_eq!(
        oldest_first,
        (0..3000).collect::<Vec<_>>(),
        "the timeline keeps the file's order"
    );
    expect_one_dead_letter(&tail.store).await;
    tail.stop().await;
}

/// The store refuses every write for a while: the tail waits, then every
/// line written meanwhile lands once and the bad line is kept once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_holds_the_tail_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = audit_file(dir.path());
    let (store, fault) = with_fault_switch(embedded_store(dir.path()));
    append_range(&path, 0, 1000);
    let tail = start_on(store, &path, |_| {});
    wait_for_records(&tail.store, 1000, Duration::from_secs(30)).await;
    fault.set(true);
    append_around_a_bad_line(&path, 1000, 2000, 3000);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    fault.set(false);
    expect_each_once(&tail.store, 3000).await;
    expect_one_dead_letter(&tail.store).await;
    tail.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100000_line_backlog_written_while_down_is_caught_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = audit_file(dir.path());
    append_range(&path, 0, 100_000);
    let tail = start(dir.path(), &path, StartAt::Beginning);
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let stored = tail.store.load_checkpoint("ocis").await.unwrap();
        let position = stored.map(|s| audit_ingest::store::Checkpoint::read::<Position>("ocis", s).unwrap());
        let offset = position.map_or(0, |p| p.offset);
        if offset == std::fs::metadata(&path).unwrap().len() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    expect_each_once(&tail.store, 100_000).await;
    tail.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_directory_created_after_start_is_watched_once_it_appears() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let path = logs.join("audit.log");
    let tail = start(dir.path(), &path, StartAt::Beginning);
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::create_dir_all(&logs).unwrap();
    append_range(&path, 0, 20);
    expect_each_once(&tail.store, 20).await;
    tail.stop().await;
}

/// A 20 MiB line that arrives in pieces, its newline last: its first
/// `max_line_bytes` become one dead letter naming the offset, the lines
/// around it land, and a restart neither repeats nor re-reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20_mib_line_becomes_a_dead_letter_and_the_next_lines_are_read() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let path = audit_file(dir.path());
    append_range(&path, 0, 10);
    let offset = std::fs::metadata(&path).unwrap().len();
    let tail = start(dir.path(), &path, StartAt::Beginning);
    wait_for_records(&tail.store, 10, Duration::from_secs(30)).await;
    let mut file = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    let piece = vec![b'x'; 4 << 20];
    for _ in 0..5 {
        file.write_all(&piece).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    file.write_all(b"\n").unwrap();
    append_range(&path, 10, 20);
    expect_each_once(&tail.store, 20).await;
    let letters = tail.store.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1, "one dead letter for the long line: {letters:?}");
    let letter = &letters[0].1;
    assert_eq!(letter.body.len(), 1 << 20, "its first max_line_bytes are kept");
    assert!(letter.body.iter().all(|b| *b == b'x'));
    assert!(
        letter
            .error
            .contains(&format!("line of {} bytes at offset {offset}", 20 << 20)),
        "{}",
        letter.error
    );
    let store = tail.stop().await;
    drop(store);
    let again = start(dir.path(), &path, StartAt::Beginning);
    append_range(&path, 20, 30);
    expect_each_once(&again.store, 30).await;
    assert_eq!(again.store.dead_letters(10).await.unwrap().len(), 1, "not kept twice");
    again.stop().await;
}
