//! The `audit-ingest` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use audit_ingest::config::{LogFormat, Settings};
use clap::{Parser, Subcommand};

/// Collects the audit trail of a self-hosted platform (Stalwart, Authentik,
/// oCIS) into one deduplicated timeline. Payload mapping runs in WebAssembly
/// mappers that can be replaced while the service runs.
#[derive(Parser)]
#[command(name = "audit-ingest", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service. Without a config file the defaults apply: listen on
    /// 0.0.0.0:3001 (AUDIT_LISTEN), data under ./data (AUDIT_DATA_DIR), drop-in
    /// mappers from ./mappers.d (AUDIT_MAPPERS_DIR), the embedded store unless
    /// AUDIT_MONGODB_URI is set, and the built-in mappers.
    Serve {
        /// A TOML configuration file (see audit-ingest.example.toml).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Log one JSON object per line (same as log_format = "json" or
        /// AUDIT_LOG_FORMAT=json).
        #[arg(long)]
        json_logs: bool,
    },
    /// Work with configuration files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Work with API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Work with mapper components.
    Mapper {
        #[command(subcommand)]
        command: MapperCommand,
    },
    /// Re-map stored dead letters with the mappers now serving (built-in and
    /// drop-in): what maps is written and the letter removed, what still
    /// fails is kept. Safe to interrupt (Ctrl-C) and run again; never writes
    /// an event twice. Can run beside a running service.
    Replay {
        /// The service's configuration file (for the store and mapper directory).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Only dead letters of this source.
        #[arg(long)]
        source: Option<String>,
        /// At most this many letters.
        #[arg(long)]
        limit: Option<u64>,
        /// Also re-map stored records that landed on a catch-all verb
        /// (unrecognised event types), replacing each with what the current
        /// mapper makes of its original.
        #[arg(long)]
        catch_all: bool,
    },
    /// Write every record in a time range (and the other filters) to a file
    /// or standard output, as NDJSON (each record as `GET /audit/{id}`
    /// returns it) or as OCSF 1.1.0 events, newest first, a page at a
    /// time. Reads the configured store directly; can run beside the service.
    Export {
        /// The service's configuration file (for the store).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Records at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Records before this time (RFC 3339).
        #[arg(long)]
        until: Option<String>,
        /// Only this source.
        #[arg(long)]
        source: Option<String>,
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Only this action (a value ending in `*`, `.` or `_` is a prefix).
        #[arg(long)]
        action: Option<String>,
        /// `ndjson` or `ocsf`.
        #[arg(long, value_enum, default_value = "ndjson")]
        format: audit_ingest::export::Format,
        /// Compress with gzip.
        #[arg(long)]
        gzip: bool,
        /// The file to write (made whole or not at all: written beside it,
        /// then renamed; a device or pipe is written as it is); default:
        /// standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Make an Ed25519 key pair to sign digests of the store's hash chain:
    /// the private key at PATH (mode 0600, never overwritten), the public
    /// key at PATH.pub. Point AUDIT_SIGNING_KEY_FILE (or [evidence]
    /// signing_key) at PATH; give PATH.pub to whoever verifies.
    Keygen {
        /// Where the private key goes.
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Check the embedded store for records altered, deleted or inserted
    /// outside the service: re-computes the hash chain from the store file
    /// and checks each signed digest (in the store and in the digest
    /// directory) against the expected key. Exit code 0 when everything
    /// holds, 1 when anything does not, 2 when it cannot check.
    Verify {
        /// The service's configuration file (for the data and digest directories).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// A public key digests may be signed with (default: the public
        /// half of the configured signing key); repeat it after a key
        /// rotation, for the old key and the new.
        #[arg(long = "public-key")]
        public_keys: Vec<PathBuf>,
        /// Only digests made at or after this time (RFC 3339) are checked.
        #[arg(long)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Digest files to check besides the store's own copies (default:
        /// the configured digest directory).
        #[arg(long)]
        digests: Option<PathBuf>,
        /// Print the findings as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a machine token for the API. Prints the token once (give it to
    /// the client as `Authorization: Bearer <token>`) and the
    /// `[[api.tokens]]` entry to add to the configuration, which holds only
    /// its hash.
    Create {
        /// Who holds it; shown as the actor of its reads in the timeline.
        #[arg(long)]
        name: String,
        /// `read` (every tenant), `read:tenant=<slug>`, `admin` (replay) or
        /// `metrics`; repeat for several.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a configuration (file plus environment) without starting
    /// anything, and print the effective configuration with secrets redacted.
    Check {
        /// The file to check; without one, the defaults plus environment.
        file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum MapperCommand {
    /// Run a mapper component on fixture files (`<case>.input.json` beside
    /// `<case>.expected.json`) exactly as the service would, and show where
    /// its output differs from the expected output (with the `[mapper]`
    /// limits and instance mode of the configuration, as for a drop-in).
    Check {
        /// The service's configuration file (for the `[mapper]` limits).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The mapper component (`.wasm`).
        wasm: PathBuf,
        /// Fixture input files; a directory means every `*.input.json` in it.
        #[arg(required = true)]
        fixtures: Vec<PathBuf>,
    },
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// jemalloc instead of glibc's malloc: glibc gives each of the service's
/// threads (async workers, the blocking pool that runs mapper calls, the
/// store's threads) an arena of its own and keeps what they free. At a
/// steady 10,000 events/s the service's resident memory peaked at 76 MiB
/// with glibc (46 MiB with its arenas limited to two by `MALLOC_ARENA_MAX`)
/// and stays near 50 MiB with jemalloc, with no change in throughput beyond this
/// machine's run-to-run noise (BENCHMARKS.md, "Memory of the service alone").
#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Loads, checks and resolves the configuration, or says what is wrong
/// (exit code 2): the one way every command starts.
fn load_or_exit(file: Option<&std::path::Path>) -> Result<Settings, ExitCode> {
    Settings::load(file).map_err(|e| {
        eprintln!("configuration error: {e}");
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, json_logs } => {
            let mut settings = match load_or_exit(config.as_deref()) {
                Ok(s) => s,
                Err(code) => return code,
            };
            if json_logs {
                settings.config.log_format = LogFormat::Json;
            }
            init_logs(settings.config.log_format);
            let runtime = tokio::runtime::Runtime::new().expect("start the tokio runtime");
            match runtime.block_on(audit_ingest::serve::serve(settings)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "audit-ingest stopped with an error");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Config {
            command: ConfigCommand::Check { file },
        } => match load_or_exit(file.as_deref()) {
            Ok(settings) => {
                for p in settings.pollers.iter().filter(|p| p.sends_token_in_clear()) {
                    eprintln!(
                        "warning: pollers[{}] sends its token over plain http://: anyone on the path can read it; use https://",
                        p.source
                    );
                }
                println!("configuration is valid; effective settings:\n");
                print!("{}", toml::to_string_pretty(&settings.config).unwrap_or_default());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Token {
            command: TokenCommand::Create { name, scopes },
        } => match audit_ingest::access::tokens::create(&name, &scopes) {
            Ok(made) => {
                println!("{}", made.token);
                eprintln!("\nThe token above is shown only now. Add this to the configuration file and restart:\n");
                eprint!("{}", audit_ingest::access::tokens::entry_toml(&made.entry));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("token create: {e}");
                ExitCode::from(2)
            }
        },
        Command::Mapper {
            command: MapperCommand::Check { config, wasm, fixtures },
        } => match load_or_exit(config.as_deref()) {
            Ok(settings) => mapper_check(&wasm, &fixtures, &settings.config.runtime_config()),
            Err(code) => code,
        },
        Command::Keygen { out } => match audit_ingest::evidence::SigningKey::generate(&out) {
            Ok(key) => {
                println!("{}", key.to_base64());
                eprintln!(
                    "private key: {} (keep it readable by the service only)\npublic key: {} (id {}; give it to whoever verifies)",
                    out.display(),
                    audit_ingest::evidence::keys::public_path(&out).display(),
                    key.id()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("keygen failed: {e}");
                ExitCode::from(2)
            }
        },
        Command::Verify {
            config,
            public_keys,
            since,
            digests,
            json,
        } => {
            let settings = match load_or_exit(config.as_deref()) {
                Ok(s) => s,
                Err(code) => return code,
            };
            let request = audit_ingest::evidence::verify::Request {
                public_keys,
                since,
                digests,
            };
            match audit_ingest::evidence::verify::for_settings(&settings, request) {
                Ok(verdict) => {
                    if json {
                        println!("{}", serde_json::to_string_pretty(&verdict).unwrap_or_default());
                    } else {
                        print!("{}", audit_ingest::evidence::verify::render(&verdict));
                    }
                    if verdict.clean() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("verify could not check the store: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Export {
            config,
            since,
            until,
            source,
            tenant,
            action,
            format,
            gzip,
            out,
        } => {
            let settings = match load_or_exit(config.as_deref()) {
                Ok(s) => s,
                Err(code) => return code,
            };
            let filters: Vec<(String, String)> = [
                ("since", since),
                ("until", until),
                ("source", source),
                ("tenant", tenant),
                ("action", action),
            ]
            .into_iter()
            .filter_map(|(name, value)| value.map(|v| (name.to_string(), v)))
            .collect();
            let query = match audit_ingest::export::export_query(&filters) {
                Ok(q) => q,
                Err(e) => {
                    eprintln!("export: {}", e.replace("parameter `", "option `--"));
                    return ExitCode::from(2);
                }
            };
            let runtime = tokio::runtime::Runtime::new().expect("start the tokio runtime");
            match runtime.block_on(export(settings, query, format, gzip, out)) {
                Ok(n) => {
                    eprintln!("exported {n} records");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("export failed: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Replay {
            config,
            source,
            limit,
            catch_all,
        } => {
            let settings = match load_or_exit(config.as_deref()) {
                Ok(s) => s,
                Err(code) => return code,
            };
            init_logs(settings.config.log_format);
            let runtime = tokio::runtime::Runtime::new().expect("start the tokio runtime");
            let scope = audit_ingest::replay::ReplayScope {
                source,
                limit,
                catch_all,
                ..Default::default()
            };
            match runtime.block_on(replay(settings, scope)) {
                Ok(report) => {
                    println!(
                        "{} dead letters: {} now map ({} events written, {} already stored), {} still fail and are kept",
                        report.letters, report.resolved, report.inserted, report.duplicates, report.still_failing
                    );
                    if catch_all {
                        println!("{} catch-all records: {} re-mapped", report.catch_all, report.remapped);
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("replay failed: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `export`: the configured store, to a file (whole or not at all) or stdout.
async fn export(
    settings: Settings,
    query: audit_ingest::store::Query,
    format: audit_ingest::export::Format,
    gzip: bool,
    out: Option<PathBuf>,
) -> anyhow::Result<u64> {
    use anyhow::Context;
    let store = audit_ingest::serve::open_store(
        &settings.config,
        settings.mongodb_uri.as_ref(),
        audit_ingest::serve::StoreWait::No,
    )
    .await?;
    // A device or pipe (`/dev/stdout`, a FIFO) is written as it is: only a
    // regular file is made beside and renamed into place.
    let special = out
        .as_deref()
        .and_then(|p| std::fs::metadata(p).ok())
        .is_some_and(|m| !m.is_file());
    let path = match out {
        Some(path) if !special => path,
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .with_context(|| format!("open {}", path.display()))?;
            let mut writer = std::io::BufWriter::new(file);
            return audit_ingest::export::to_writer(&store, query, format, gzip, &mut writer).await;
        }
        None => {
            let mut stdout = std::io::BufWriter::new(std::io::stdout());
            return audit_ingest::export::to_writer(&store, query, format, gzip, &mut stdout).await;
        }
    };
    let mut partial = path.clone().into_os_string();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let file = std::fs::File::create(&partial).with_context(|| format!("create {}", partial.display()))?;
    let mut writer = std::io::BufWriter::new(file);
    let written = audit_ingest::export::to_writer(&store, query, format, gzip, &mut writer).await;
    let n = match written {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    writer
        .into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .with_context(|| format!("write {}", partial.display()))?;
    std::fs::rename(&partial, &path).with_context(|| format!("rename to {}", path.display()))?;
    Ok(n)
}

/// `replay`: the store and mappers of the configuration, a progress bar, Ctrl-C to stop.
async fn replay(
    settings: Settings,
    scope: audit_ingest::replay::ReplayScope,
) -> anyhow::Result<audit_ingest::replay::ReplayReport> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let pipeline = audit_ingest::serve::pipeline_for(
        &settings,
        audit_ingest::telemetry::Telemetry::new(),
        audit_ingest::serve::StoreWait::No,
    )
    .await?;
    pipeline
        .tenants()
        .set_learned(pipeline.store().tenant_slugs().await.unwrap_or_default());
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("stopping after the current letter; run replay again to continue");
            flag.store(true, Ordering::SeqCst);
        }
    });
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {elapsed} {pos} letters ({per_sec}) {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let report = audit_ingest::replay::replay(
        &pipeline,
        &scope,
        |r| {
            bar.set_position(r.letters);
            bar.set_message(format!("{} mapped, {} still failing", r.resolved, r.still_failing));
        },
        || stop.load(Ordering::SeqCst),
    )
    .await?;
    bar.finish_and_clear();
    Ok(report)
}

fn mapper_check(
    wasm: &std::path::Path,
    fixtures: &[PathBuf],
    config: &audit_ingest::runtime::RuntimeConfig,
) -> ExitCode {
    let mut inputs = Vec::new();
    for f in fixtures {
        if f.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(f)
                .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default();
            found.retain(|p| p.to_string_lossy().ends_with(".input.json"));
            found.sort();
            inputs.extend(found);
        } else {
            inputs.push(f.clone());
        }
    }
    if inputs.is_empty() {
        eprintln!("no fixture inputs (*.input.json) found");
        return ExitCode::from(2);
    }
    match audit_ingest::runtime::check_mapper_file(wasm, &inputs, config) {
        Ok(report) => {
            println!(
                "{} {} ({} event types)",
                report.info.name,
                report.info.version,
                report.info.event_types.len()
            );
            let mut failed = 0;
            for (name, diffs) in &report.cases {
                if diffs.is_empty() {
                    println!("  ok    {name}");
                } else {
                    failed += 1;
                    println!("  DIFF  {name}");
                    for d in diffs {
                        println!("        {d}");
                    }
                }
            }
            println!("{} passed, {} failed", report.cases.len() - failed, failed);
            if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("{}: {e:#}", wasm.display());
            ExitCode::FAILURE
        }
    }
}
