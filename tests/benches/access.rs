//! What authenticating a request costs: the service token, a machine token,
//! and OIDC access tokens of each accepted algorithm with the issuer's keys
//! cached (the key set is fetched once, before timing): a token's first use
//! (every check, the signature included), the same token repeated (it is
//! remembered until it expires), and the bare signature check as the floor.
//!
//! `cargo bench -p audit-ingest-tests --bench access`

use std::time::{Duration, Instant};

use audit_ingest::access::{Access, oidc, tokens};
use audit_ingest::config::Secret;
use audit_ingest::ingest::Tenants;
use audit_ingest_tests::bench::{median_us, percentile, sample};
use audit_ingest_tests::oidc::{Issuer, SigningKey};

/// Distinct tokens verified per algorithm for the first-use figures.
const FIRST_SIGHT: usize = 2000;
const GROUPS: &[&str] = &["authentik Admins", "acme", "audit-admin"];

fn main() {
    if !audit_ingest_tests::bench::started_by_cargo_bench() {
        return;
    }
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let issuer = tokio.block_on(Issuer::start(vec![
        SigningKey::ed25519("ed"),
        SigningKey::p256("ec"),
        SigningKey::rsa("rsa"),
    ]));
    let machine = tokens::create("bench", &["read:tenant=acme".into()]).unwrap();
    let access = Access::new(
        Some(Secret::new("service-token-for-the-benchmark")),
        tokens::MachineTokens::resolve(std::slice::from_ref(&machine.entry)).unwrap(),
        Some(oidc::Verifier::new(issuer.config()).unwrap()),
        false,
    );
    let tenants = Tenants::new(["acme".to_string(), "beta".to_string()]);
    let row = |name: &str, times: &[Duration]| {
        println!(
            "| {name} | {:.1} µs | {:.1} µs |",
            median_us(times),
            percentile(times, 99.0).as_secs_f64() * 1e6
        );
    };
    println!("| credential | median | p99 |\n|---|---|---|");
    for (name, token) in [
        ("service token", "service-token-for-the-benchmark".to_string()),
        ("machine token (1 configured)", machine.token.clone()),
    ] {
        let times = sample(Duration::from_secs(3), || {
            tokio.block_on(access.authenticate(&token, &tenants)).expect("accepted");
        });
        row(name, &times);
    }
    // The first call fetches the issuer's keys; timing starts after it.
    let warm = issuer.key(0).sign(&issuer.claims("warm", &["acme"]));
    tokio.block_on(access.authenticate(&warm, &tenants)).expect("accepted");
    for i in 0..3 {
        let key = issuer.key(i);
        let alg = format!("{:?}", key.alg);
        // A token seen for the first time: every check, the signature included.
        // Each is distinct (its own subject), signed before timing starts.
        // The first half warms the machine up and is not counted.
        let fresh: Vec<String> = (0..2 * FIRST_SIGHT)
            .map(|n| key.sign(&issuer.claims(&format!("user{i}-{n}"), GROUPS)))
            .collect();
        let mut times = Vec::with_capacity(FIRST_SIGHT);
        for (n, token) in fresh.iter().enumerate() {
            let t = Instant::now();
            tokio.block_on(access.authenticate(token, &tenants)).expect("accepted");
            if n >= FIRST_SIGHT {
                times.push(t.elapsed());
            }
        }
        times.sort();
        row(&format!("OIDC {alg}, first use of a token"), &times);
        // The same token again, as a session or job sends it on every request.
        let token = &fresh[0];
        let times = sample(Duration::from_secs(3), || {
            tokio.block_on(access.authenticate(token, &tenants)).expect("accepted");
        });
        row(&format!("OIDC {alg}, the token repeated"), &times);
        // The floor: the signature check alone, by the crate (ring) doing it.
        let (message, signature) = token.rsplit_once('.').unwrap();
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.jwk.clone()).unwrap();
        let decoding = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
        let times = sample(Duration::from_secs(3), || {
            assert!(jsonwebtoken::crypto::verify(signature, message.as_bytes(), &decoding, key.alg).unwrap());
        });
        row(&format!("{alg} signature check alone"), &times);
    }
    assert_eq!(issuer.fetches(), 1, "the keys were fetched once and cached");
}
