#![no_main]
//! `map_stalwart`: see `audit_ingest_tests::fuzz`.

use std::cell::RefCell;

thread_local! {
    static TARGET: RefCell<audit_ingest_tests::fuzz::Target> =
        RefCell::new(audit_ingest_tests::fuzz::target("map_stalwart").expect("a known target"));
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| TARGET.with(|t| t.borrow_mut().run(data)));
