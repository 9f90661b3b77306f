//! The audit-ingest guest SDK: everything a mapper author needs to turn one
//! source system's payloads into normalised audit events, compiled to a
//! WebAssembly component that the host loads and hot-reloads.
//!
//! A mapper is one type implementing [`Mapper`] plus one [`export_mapper!`]
//! line. wit-bindgen stays hidden; the export glue is compiled only for
//! `wasm32`, so the same code runs under a native `cargo test`.
//!
//! ```
//! use audit_guest_sdk::{json, AuditEvent, Delivery, Mapped, MapperInfo, MappingError, Outcome};
//!
//! struct Example;
//!
//! impl audit_guest_sdk::Mapper for Example {
//!     fn describe() -> MapperInfo {
//!         MapperInfo { name: "example".into(), version: "1.0.0".into(), event_types: vec!["login".into()] }
//!     }
//!     fn map(delivery: &Delivery) -> Result<Mapped, MappingError> {
//!         let body = delivery.json()?;
//!         let events = json::find_events(&body)
//!             .ok_or_else(|| MappingError::UnsupportedShape("no events".into()))?;
//!         Ok(events.into_iter().map(|e| {
//!             AuditEvent::new("example.login").outcome(Outcome::Success).original(e.clone())
//!         }).collect::<Vec<_>>().into())
//!     }
//! }
//! audit_guest_sdk::export_mapper!(Example);
//!
//! let out = <Example as audit_guest_sdk::Mapper>::map(
//!     &Delivery::from_body("example", br#"{"events":[{}]}"#.to_vec())).unwrap();
//! assert_eq!(out.events[0].action, "example.login");
//! ```
//!
//! Modules:
//! - [`event`]: input and output types (re-exported at the root);
//! - [`json`]: defensive JSON helpers (event lists, string-or-number, exact u64, name spellings);
//! - [`fields`]: a JSON object's fields read without building a tree (for hot paths);
//! - [`digest`]: SHA-256, computed by the host in a component (`audit:mapper@0.4.0`);
//! - [`fixtures`]: golden fixture files, run natively and by the host.

#![deny(missing_docs)]

pub mod digest;
pub mod event;
pub mod fields;
pub mod fixtures;
pub mod json;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod __bindings;

pub use event::{
    Actor, AuditEvent, Delivery, FileLines, Mapped, MapperInfo, MappingError, Outcome, PageRequest, PollPage,
    QueryParam, RawJson, Target, Transport,
};
pub use serde_json;

/// A source mapper: implement it on a unit type and export it with [`export_mapper!`].
pub trait Mapper {
    /// Name (= the source it serves), version and the event types it knows.
    fn describe() -> MapperInfo;

    /// Maps one delivery to audit events.
    fn map(delivery: &Delivery) -> Result<Mapped, MappingError>;

    /// Poll sources: the query that fetches one page of the source's list,
    /// ordered newest first. The host decides which pages to fetch and where
    /// a walk stops. Push and file sources keep this default.
    fn page_query(_request: &PageRequest) -> Vec<QueryParam> {
        Vec::new()
    }

    /// File sources: several lines of one file in one call (saving the
    /// call's own cost per line), one result per line in order. The default
    /// maps each line as its own `file` delivery with [`Mapper::map`], which
    /// is what almost every mapper wants.
    fn map_lines(lines: &FileLines) -> Vec<Result<Mapped, MappingError>> {
        lines.deliveries().map(|d| Self::map(&d)).collect()
    }
}

/// Exports a [`Mapper`] as the component's `audit:mapper/mapper` world.
///
/// Expands to nothing outside `wasm32`, so native tests compile the same crate.
#[macro_export]
macro_rules! export_mapper {
    ($mapper:ty) => {
        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        #[allow(unsafe_code, reason = "wit-bindgen's generated export glue")]
        mod __audit_mapper_export {
            use super::*;
            struct Export;
            impl $crate::__bindings::Guest for Export {
                $crate::__map_lines_export!($mapper);
                fn describe() -> $crate::__bindings::WitMapperInfo {
                    $crate::__bindings::info_to_wit(<$mapper as $crate::Mapper>::describe())
                }
                fn map_delivery(
                    delivery: $crate::__bindings::WitDelivery,
                ) -> ::core::result::Result<$crate::__bindings::WitMapped, $crate::__bindings::WitMappingError> {
                    let delivery = $crate::__bindings::delivery_from_wit(delivery);
                    $crate::__bindings::result_to_wit(<$mapper as $crate::Mapper>::map(&delivery))
                }
                fn page_query(
                    request: $crate::__bindings::WitPageRequest,
                ) -> ::std::vec::Vec<$crate::__bindings::WitQueryParam> {
                    let request = $crate::__bindings::page_request_from_wit(request);
                    $crate::__bindings::params_to_wit(<$mapper as $crate::Mapper>::page_query(&request))
                }
            }
            $crate::__bindings::__export_mapper_world!(Export with_types_in $crate::__bindings);
        }
    };
}

/// The `map-lines` export of `audit:mapper@0.3.0` and later (part of
/// [`export_mapper!`]).
#[cfg(not(feature = "wit-0-2"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __map_lines_export {
    ($mapper:ty) => {
        fn map_lines(
            lines: $crate::__bindings::WitFileLines,
        ) -> ::std::vec::Vec<::core::result::Result<$crate::__bindings::WitMapped, $crate::__bindings::WitMappingError>>
        {
            let lines = $crate::__bindings::file_lines_from_wit(lines);
            <$mapper as $crate::Mapper>::map_lines(&lines)
                .into_iter()
                .map($crate::__bindings::result_to_wit)
                .collect()
        }
    };
}

/// `audit:mapper@0.2.0` has no `map-lines` export (the `wit-0-2` feature
/// builds such a component, for the host's compatibility tests).
#[cfg(feature = "wit-0-2")]
#[doc(hidden)]
#[macro_export]
macro_rules! __map_lines_export {
    ($mapper:ty) => {};
}

/// Declares a `#[test]` that runs every golden fixture in the crate's
/// `tests/fixtures/` through the mapper natively (see [`fixtures`]).
///
/// ```
/// # use audit_guest_sdk::{Delivery, Mapped, Mapper, MapperInfo, MappingError};
/// # struct Acme;
/// # impl Mapper for Acme {
/// #     fn describe() -> MapperInfo {
/// #         MapperInfo { name: "acme".into(), version: "1.0.0".into(), event_types: vec![] }
/// #     }
/// #     fn map(_: &Delivery) -> Result<Mapped, MappingError> { Ok(Mapped::default()) }
/// # }
/// audit_guest_sdk::golden_fixtures!(Acme, "acme");
/// ```
#[macro_export]
macro_rules! golden_fixtures {
    ($mapper:ty, $source:expr) => {
        #[cfg(test)]
        #[test]
        fn golden_fixtures() {
            $crate::fixtures::assert_fixtures(
                concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"),
                $source,
                <$mapper as $crate::Mapper>::map,
            );
        }
    };
}
