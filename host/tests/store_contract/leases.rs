//! The contract of leases: one holder at a time, handed over on expiry or
//! release with a higher token, and a source's checkpoint refused once its
//! lease moved on, for every backend.

use super::*;
use audit_ingest::store::{Claim, StoreError};

async fn granted(store: &Store, name: &str, owner: &str, ttl: Duration) -> u64 {
    match store.take_lease(name, owner, ttl).await.unwrap() {
        Claim::Granted { token } => token,
        held => panic!("{owner} should get {name}, got {held:?}"),
    }
}

async fn holder(store: &Store, name: &str, asking: &str) -> String {
    match store.take_lease(name, asking, Duration::from_secs(5)).await.unwrap() {
        Claim::Held { owner, until } => {
            assert!(until > Utc::now(), "a held lease expires in the future");
            owner
        }
        granted => panic!("{asking} should be told who holds {name}, got {granted:?}"),
    }
}

fn fenced(n: u64, token: u64) -> Commit {
    Commit::Checkpoint(checkpoint("leased", &json!({ "n": n })).fenced(Some(token)))
}

/// `atomic`: the backend commits records and checkpoint together, so a
/// refused checkpoint keeps none of its records.
pub(super) async fn one_holder_and_fenced_checkpoints(store: Store, atomic: bool) {
    let ttl = Duration::from_millis(800);
    let a = granted(&store, "leased", "instance-a", ttl).await;
    assert_eq!(holder(&store, "leased", "instance-b").await, "instance-a");
    assert_eq!(
        granted(&store, "leased", "instance-a", ttl).await,
        a,
        "a renewal keeps the token"
    );
    // Other leases are independent.
    let r = granted(&store, "@retention", "instance-b", ttl).await;
    assert!(r >= 1);
    store
        .write(vec![record("leased", "l.a", 1, Some("l1"))], fenced(1, a))
        .await
        .expect("the holder's fenced checkpoint commits");
    assert_eq!(store.load_checkpoint("leased").await.unwrap(), Some(json!({ "n": 1 })));

    // A stops renewing (it froze); once its lease expired B takes over.
    tokio::time::sleep(ttl + Duration::from_millis(300)).await;
    let b = granted(&store, "leased", "instance-b", ttl).await;
    assert!(b > a, "a new holder gets a higher token ({a} then {b})");
    // A wakes up and writes an older position: refused, the cursor stays.
    let late = store
        .write(vec![record("leased", "l.a", 2, Some("l2"))], fenced(0, a))
        .await;
    assert!(
        matches!(&late, Err(StoreError::Fenced { lease, token }) if lease == "leased" && *token == a),
        "{late:?}"
    );
    assert_eq!(store.load_checkpoint("leased").await.unwrap(), Some(json!({ "n": 1 })));
    let stored: Vec<_> = all_pages(&store, q()).await;
    if atomic {
        assert_eq!(stored.len(), 1, "a refused write keeps none of its records");
    }
    store
        .write(vec![record("leased", "l.a", 3, Some("l3"))], fenced(3, b))
        .await
        .expect("the new holder's checkpoint commits");
    assert_eq!(store.load_checkpoint("leased").await.unwrap(), Some(json!({ "n": 3 })));
    assert_eq!(holder(&store, "leased", "instance-a").await, "instance-b");

    // Released: the next owner need not wait for the expiry.
    store.release_lease("leased", "instance-b").await.unwrap();
    let c = granted(&store, "leased", "instance-a", Duration::from_secs(60)).await;
    assert!(c > b, "{b} then {c}");
    // Only the holder can release it.
    store.release_lease("leased", "instance-b").await.unwrap();
    assert_eq!(holder(&store, "leased", "instance-b").await, "instance-a");
    assert!(matches!(
        store.write(Vec::new(), fenced(4, b)).await,
        Err(StoreError::Fenced { .. })
    ));
    // An unfenced checkpoint (a file tail's: one per host) is written as before.
    store
        .write(Vec::new(), Commit::Checkpoint(checkpoint("leased", &json!({ "n": 5 }))))
        .await
        .unwrap();
    assert_eq!(store.load_checkpoint("leased").await.unwrap(), Some(json!({ "n": 5 })));
}

/// Many instances asking for one free lease at once: exactly one gets it.
pub(super) async fn one_winner_among_many(store: Store) {
    let mut asks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        asks.push(tokio::spawn(async move {
            store
                .take_lease("contended", &format!("instance-{i}"), Duration::from_secs(30))
                .await
                .unwrap()
        }));
    }
    let mut winners = 0;
    for ask in asks {
        if matches!(ask.await.unwrap(), Claim::Granted { .. }) {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
}
