//! Docker cannot run here, so the deployment files are checked by reading
//! them: the compose file parses and wires one shared secret and the oCIS
//! audit file between services; the Dockerfile's stages and toolchain line
//! up with the repository; the systemd unit runs the service hardened.

use std::collections::BTreeSet;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{ROOT}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `${NAME}`, `${NAME:-x}`, `${NAME:?x}` references in a text.
fn variables(text: &str) -> BTreeSet<String> {
    text.split("${")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

fn env_of<'a>(compose: &'a serde_yaml::Value, service: &str) -> &'a serde_yaml::Mapping {
    compose["services"][service]["environment"]
        .as_mapping()
        .unwrap_or_else(|| panic!("{service} has an environment map"))
}

fn text(value: &serde_yaml::Value) -> String {
    value
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| serde_yaml::to_string(value).unwrap())
}

#[test]
fn the_compose_file_wires_the_shared_secret_and_the_ocis_audit_file() {
    let source = read("deploy/docker-compose.yml");
    let compose: serde_yaml::Value = serde_yaml::from_str(&source).expect("valid YAML");
    let env_example = read("deploy/.env.example");
    let defined: BTreeSet<String> = env_example
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .map(|l| l.split('=').next().unwrap().trim().to_string())
        .collect();
    for var in variables(&source) {
        assert!(
            defined.contains(&var),
            "${{{var}}} is used in the compose file but not in deploy/.env.example"
        );
    }
    let ingest = env_of(&compose, "audit-ingest");
    let stalwart = env_of(&compose, "stalwart");
    let secret = |m: &serde_yaml::Mapping| text(&m[&serde_yaml::Value::from("STALWART_WEBHOOK_SECRET")]);
    assert_eq!(
        secret(ingest),
        secret(stalwart),
        "Stalwart signs with the secret audit-ingest verifies with"
    );

    let ocis = env_of(&compose, "ocis");
    let get = |m: &serde_yaml::Mapping, k: &str| text(&m[&serde_yaml::Value::from(k)]);
    assert_eq!(get(ocis, "AUDIT_FORMAT"), "json");
    assert_eq!(get(ocis, "AUDIT_LOG_TO_FILE"), "true");
    assert!(get(ocis, "OCIS_ADD_RUN_SERVICES").contains("audit"));
    assert_eq!(
        get(ocis, "AUDIT_FILEPATH"),
        get(ingest, "OCIS_AUDIT_FILE"),
        "audit-ingest tails the file oCIS writes"
    );
    let dir = get(ocis, "AUDIT_FILEPATH").rsplit_once('/').unwrap().0.to_string();
    let mount = |service: &str| -> Option<String> {
        compose["services"][service]["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .find_map(|v| {
                let mut parts = v.split(':');
                let (volume, target) = (parts.next()?, parts.next()?);
                (target == dir).then(|| volume.to_string())
            })
    };
    assert_eq!(
        mount("ocis"),
        mount("audit-ingest"),
        "both mount the same volume at {dir}"
    );
    assert!(mount("ocis").is_some());
    // That volume is at a path the oCIS image does not have, so it starts out
    // root's; oCIS (uid 1000) can write it only after a one-shot service hands
    // it over, and both oCIS and audit-ingest wait for that step.
    let services = compose["services"].as_mapping().unwrap();
    let (owner_step, _) = services
        .iter()
        .find(|(name, svc)| {
            name.as_str() != Some("ocis")
                && svc["entrypoint"].as_sequence().is_some_and(|e| {
                    e.iter().any(|a| {
                        a.as_str()
                            .is_some_and(|a| a.contains(&format!("chown 1000:1000 {dir}")))
                    })
                })
        })
        .unwrap_or_else(|| panic!("no service chowns {dir} to oCIS's uid 1000"));
    let owner_step = owner_step.as_str().unwrap();
    assert_eq!(compose["services"][owner_step]["user"].as_str(), Some("0:0"));
    assert_eq!(
        mount(owner_step),
        mount("ocis"),
        "{owner_step} chowns the audit volume itself"
    );
    for waiting in ["ocis", "audit-ingest"] {
        assert_eq!(
            compose["services"][waiting]["depends_on"][owner_step]["condition"].as_str(),
            Some("service_completed_successfully"),
            "{waiting} starts after {owner_step}"
        );
    }
    // No TLS proxy in front of oCIS here: its URL must be plain http.
    if get(ocis, "PROXY_TLS") == "false" {
        assert!(
            get(ocis, "OCIS_URL").starts_with("http://"),
            "OCIS_URL is https but oCIS serves plain HTTP"
        );
    }

    // Every audit-ingest setting named in the compose file is one the service reads.
    let sources: String = [
        "host/src/config/mod.rs",
        "host/src/presets.rs",
        "host/src/sources/poll/mod.rs",
        "host/src/sources/webhook/mod.rs",
    ]
    .iter()
    .map(|p| read(p))
    .collect();
    for key in ingest.keys().filter_map(|k| k.as_str()) {
        assert!(
            sources.contains(&format!("\"{key}\"")),
            "audit-ingest does not read {key}"
        );
    }
    // Every named volume is declared.
    let declared = compose["volumes"].as_mapping().unwrap();
    for (name, service) in compose["services"].as_mapping().unwrap() {
        for v in service["volumes"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
        {
            let volume = v.split(':').next().unwrap();
            if !volume.starts_with('.') && !volume.starts_with('/') {
                assert!(
                    declared.contains_key(serde_yaml::Value::from(volume)),
                    "{name:?}: volume {volume} is not declared"
                );
            }
        }
    }
}

#[test]
fn the_dockerfile_builds_with_the_pinned_toolchain_and_ships_the_binary() {
    let dockerfile = read("Dockerfile");
    let toolchain = read("rust-toolchain.toml");
    let channel = toolchain
        .lines()
        .find_map(|l| l.trim().strip_prefix("channel"))
        .unwrap();
    let version = channel.trim_start_matches([' ', '=']).trim_matches('"');
    let minor = version.rsplit_once('.').unwrap().0; // 1.95.0 → 1.95
    let stages: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .filter_map(|l| l.split(" AS ").nth(1))
        .collect();
    assert!(
        dockerfile.contains(&format!("FROM rust:{minor}")),
        "the build image uses Rust {minor}"
    );
    assert!(
        dockerfile.contains("rustup toolchain install"),
        "the wasm32-wasip2 target comes from rust-toolchain.toml"
    );
    for line in dockerfile.lines().filter(|l| l.contains("--from=")) {
        let stage = line.split("--from=").nth(1).unwrap().split_whitespace().next().unwrap();
        assert!(
            stages.contains(&stage),
            "COPY --from={stage}: no such stage in {stages:?}"
        );
    }
    assert!(dockerfile.contains("cargo build --release --locked -p audit-ingest"));
    assert!(
        dockerfile.contains("USER nonroot"),
        "the runtime image does not run as root"
    );
    assert!(dockerfile.contains("EXPOSE 3001"));
    // Every volume of the runtime image exists in it before it is declared,
    // and the data directory belongs to the user the image runs as, so a
    // fresh named volume there is writable (distroless nonroot = 65532).
    let runtime = dockerfile.rsplit("\nFROM ").next().unwrap();
    let volumes = runtime
        .lines()
        .find_map(|l| l.strip_prefix("VOLUME "))
        .expect("the runtime image declares its volumes");
    let data = runtime
        .lines()
        .find_map(|l| l.strip_prefix("ENV AUDIT_LISTEN=").map(|_| ()))
        .and_then(|_| runtime.split("AUDIT_DATA_DIR=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the image sets AUDIT_DATA_DIR");
    for volume in volumes
        .trim_matches(['[', ']'])
        .split(',')
        .map(|v| v.trim().trim_matches('"'))
    {
        let copy = runtime
            .lines()
            .find(|l| l.starts_with("COPY ") && l.trim_end().ends_with(&format!(" {volume}")))
            .unwrap_or_else(|| panic!("{volume} is not made in the runtime image before it is a volume"));
        if volume == data {
            assert!(
                copy.contains("--chown=65532:65532"),
                "{volume} belongs to nonroot: {copy}"
            );
        }
    }
}

#[test]
fn the_systemd_unit_runs_the_service_hardened() {
    let unit = read("deploy/audit-ingest.service");
    let mut section = String::new();
    let mut service = Vec::new();
    for line in unit
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        if line.starts_with('[') {
            section = line.to_string();
        } else if section == "[Service]" {
            let (k, v) = line.split_once('=').unwrap_or_else(|| panic!("not key=value: {line}"));
            service.push((k.to_string(), v.to_string()));
        }
    }
    let get = |k: &str| service.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    assert!(
        get("ExecStart")
            .unwrap()
            .starts_with("/usr/local/bin/audit-ingest serve")
    );
    for (key, want) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("DynamicUser", "yes"),
        ("StateDirectory", "audit-ingest"),
        ("PrivateTmp", "yes"),
        ("KillSignal", "SIGTERM"),
        // wasmtime compiles mappers at run time: W^X enforcement would break it.
        ("MemoryDenyWriteExecute", "no"),
    ] {
        assert_eq!(get(key), Some(want), "{key}");
    }
    assert_eq!(
        get("Environment=AUDIT_DATA_DIR").or(service
            .iter()
            .find(|(k, v)| k == "Environment" && v.starts_with("AUDIT_DATA_DIR="))
            .map(|(_, v)| v.as_str())),
        Some("AUDIT_DATA_DIR=/var/lib/audit-ingest"),
        "data under the StateDirectory"
    );
}

/// The 0.16 `WebHook` object in the Stalwart guide, as an operator saves it
/// for `stalwart-cli create WebHook --file webhook.json`: valid JSON that
/// posts to this service's route, signs with the variable the compose file
/// sets, asks only for the listed events, and keeps undelivered events for
/// at least Stalwart's default.
#[test]
fn the_stalwart_guide_webhook_object_is_what_the_service_expects() {
    let guide = read("docs/stalwart.md");
    let start = guide.find("```json\n").expect("the guide shows the WebHook object") + "```json\n".len();
    let end = start + guide[start..].find("```").unwrap();
    let object: serde_json::Value = serde_json::from_str(&guide[start..end]).expect("valid JSON");
    assert!(object["url"].as_str().unwrap().ends_with("/ingest/stalwart/webhook"));
    assert_eq!(object["signatureKey"]["@type"], "EnvironmentVariable");
    let compose: serde_yaml::Value = serde_yaml::from_str(&read("deploy/docker-compose.yml")).unwrap();
    let variable = object["signatureKey"]["variableName"].as_str().unwrap();
    assert!(
        env_of(&compose, "stalwart").contains_key(serde_yaml::Value::from(variable)),
        "Stalwart's container has {variable}"
    );
    assert_eq!(object["eventsPolicy"], "include", "the default sends all event types");
    let listed: BTreeSet<&str> = guide.split_whitespace().collect();
    let events = object["events"].as_object().unwrap();
    assert!(!events.is_empty());
    for name in events.keys() {
        assert!(
            listed.contains(name.as_str()),
            "{name} is not in the guide's event list"
        );
    }
    assert!(object["discardAfter"].as_u64().unwrap() >= 300_000);
    assert_eq!(object["enable"], true);
}
